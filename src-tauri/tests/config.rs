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
