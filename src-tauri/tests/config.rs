//! The window's content security policy shuts what a page that shows model output never
//! needs: plugins, a changed base URL, form posts elsewhere, being framed.

#[test]
fn the_window_csp_denies_objects_base_forms_and_framing() {
    let conf: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../tauri.conf.json"))
            .unwrap(),
    )
    .unwrap();
    let csp = conf["app"]["security"]["csp"].as_str().expect("a CSP");
    let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
    for want in [
        "default-src 'self'",
        "script-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(directives.contains(&want), "{want} missing from {csp}");
    }
    assert!(!csp.contains("unsafe-eval"), "{csp}");
}

fn quoted_commands(src: &str) -> Vec<String> {
    src.lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix('"')?
                .strip_suffix("\",")
                .map(String::from)
        })
        .collect()
}

/// Every command the app registers has an ACL entry (build.rs's manifest), and the window's
/// capability grants each by name: a command added to the handler but not to the manifest,
/// or a blanket grant, fails here.
#[test]
fn each_app_command_is_granted_by_name_and_nothing_else_is_open() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let lib = std::fs::read_to_string(format!("{dir}/src/lib.rs")).unwrap();
    let start = lib.find("generate_handler![").expect("the invoke handler");
    let end = start + lib[start..].find("])").unwrap();
    let mut registered: Vec<String> = lib[start..end]
        .split(',')
        .filter_map(|s| {
            s.trim()
                .rsplit("::")
                .next()
                .map(str::trim)
                .map(String::from)
        })
        .filter(|s| !s.is_empty() && !s.contains('['))
        .collect();
    let mut manifest =
        quoted_commands(&std::fs::read_to_string(format!("{dir}/build.rs")).unwrap());
    registered.sort();
    manifest.sort();
    assert_eq!(
        registered, manifest,
        "build.rs's COMMANDS and the invoke handler differ"
    );

    let cap: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{dir}/capabilities/default.json")).unwrap(),
    )
    .unwrap();
    let granted: Vec<&str> = cap["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().expect("plain permission names"))
        .collect();
    for p in &granted {
        assert!(
            !p.ends_with(":default") && !p.starts_with("core:"),
            "blanket grant {p}"
        );
    }
    for c in &manifest {
        let want = format!("allow-{}", c.replace('_', "-"));
        // The text upload is the browser door's; the window imports a file by path.
        assert_eq!(
            granted.contains(&want.as_str()),
            c != "import_conversations",
            "{want}"
        );
    }
    assert!(granted.contains(&"opener:allow-open-url"));
}
