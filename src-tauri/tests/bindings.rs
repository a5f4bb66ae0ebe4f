//! The TypeScript side of the commands is generated, not hand-written: the types of everything
//! the commands send and receive come from the Rust types (ts-rs), and `commands.ts` (one typed
//! function per `#[tauri::command]`, with the argument names Tauri expects) is read off the
//! command functions themselves with syn. Both land in `ui/src/bindings/`; this test
//! regenerates them and fails if the committed files differ.
//! `SINKCHAT_UPDATE_BINDINGS=1 cargo test -p sinkchat-app --test bindings` writes them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ts_rs::{Config, TS};

fn generate(dir: &Path) {
    // serde_json writes 64-bit integers as plain JSON numbers; ids and byte counts stay far
    // below 2^53, so `number` is the honest TypeScript type. Imports carry `.js` because the UI
    // is served as plain ES modules, without a bundler.
    let cfg = Config::new()
        .with_large_int("number")
        .with_out_dir(dir)
        .with_import_extension(Some("js"));
    macro_rules! export {
        ($($t:ty),* $(,)?) => { $( <$t as TS>::export_all(&cfg).expect(stringify!($t)); )* };
    }
    export!(
        sinkchat_chat::UiError,
        sinkchat_chat::ModelState,
        sinkchat_chat::Status,
        sinkchat_chat::Sent,
        sinkchat_chat::ReplyEvent,
        sinkchat_chat::ServerState,
        sinkchat_chat::Settings,
        sinkchat_chat::models::ModelsOverview,
        sinkchat_chat::models::DownloadEvent,
        sinkchat_engine::EngineEvent,
        sinkchat_engine::MemoryView,
        sinkchat_engine::engine::SnapshotUsage,
        sinkchat_engine::ModelSummary,
        sinkchat_store::Conversation,
        sinkchat_store::Message,
        sinkchat_store::SearchHit,
        sinkchat_store::ImportSummary,
    );
}

/// The TypeScript type of a Rust type in a command's signature; named types are recorded for
/// the imports (each has its own generated file).
fn ts_type(ty: &syn::Type, named: &mut std::collections::BTreeSet<String>) -> String {
    match ty {
        syn::Type::Tuple(t) if t.elems.is_empty() => "void".into(),
        syn::Type::Path(p) => {
            let seg = p.path.segments.last().expect("a type name");
            let arg = || match &seg.arguments {
                syn::PathArguments::AngleBracketed(a) => match a.args.first() {
                    Some(syn::GenericArgument::Type(t)) => t.clone(),
                    _ => panic!("{}: expected a type argument", seg.ident),
                },
                _ => panic!("{}: expected a type argument", seg.ident),
            };
            match seg.ident.to_string().as_str() {
                "String" | "str" => "string".into(),
                "bool" => "boolean".into(),
                "i32" | "i64" | "u32" | "u64" | "usize" | "f32" | "f64" => "number".into(),
                "Vec" => format!("{}[]", ts_type(&arg(), named)),
                "Option" => format!("{} | null", ts_type(&arg(), named)),
                "UiResult" => ts_type(&arg(), named),
                other => {
                    named.insert(other.to_string());
                    other.to_string()
                }
            }
        }
        syn::Type::Reference(r) => ts_type(&r.elem, named),
        _ => panic!("a command signature uses a type this generator does not know"),
    }
}

fn camel(s: &str) -> String {
    let mut out = String::new();
    let mut up = false;
    for c in s.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.extend(c.to_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn last_ident(ty: &syn::Type) -> Option<String> {
    match ty {
        syn::Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
        _ => None,
    }
}

/// `commands.ts`: a typed function for each `#[tauri::command]` in the shell's sources.
/// Returns the file's text and the command names found.
fn commands_ts(src_dir: &Path) -> (String, Vec<String>) {
    let mut named = std::collections::BTreeSet::new();
    let mut fns = Vec::new();
    let mut names = Vec::new();
    for file in ["commands.rs", "models.rs"] {
        let text = std::fs::read_to_string(src_dir.join(file)).unwrap();
        let ast = syn::parse_file(&text).unwrap();
        for item in ast.items {
            let syn::Item::Fn(f) = item else { continue };
            let is_command = f.attrs.iter().any(|a| {
                let p: Vec<String> = a
                    .path()
                    .segments
                    .iter()
                    .map(|s| s.ident.to_string())
                    .collect();
                p == ["tauri", "command"]
            });
            if !is_command {
                continue;
            }
            let name = f.sig.ident.to_string();
            let (mut params, mut payload) = (Vec::new(), Vec::new());
            for input in &f.sig.inputs {
                let syn::FnArg::Typed(pt) = input else {
                    continue;
                };
                let syn::Pat::Ident(id) = &*pt.pat else {
                    continue;
                };
                let arg = camel(&id.ident.to_string());
                match last_ident(&pt.ty).as_deref() {
                    Some("State") | Some("Svc") | Some("AppHandle") => {}
                    Some("Channel") => {
                        let syn::Type::Path(p) = &*pt.ty else {
                            unreachable!()
                        };
                        let syn::PathArguments::AngleBracketed(a) =
                            &p.path.segments.last().unwrap().arguments
                        else {
                            panic!("Channel without a type")
                        };
                        let Some(syn::GenericArgument::Type(t)) = a.args.first() else {
                            panic!("Channel type")
                        };
                        let ev = ts_type(t, &mut named);
                        params.push(format!("{arg}: (event: {ev}) => void"));
                        payload.push(format!("{arg}: channel({arg})"));
                    }
                    _ => {
                        params.push(format!("{arg}: {}", ts_type(&pt.ty, &mut named)));
                        payload.push(arg);
                    }
                }
            }
            let ret = match &f.sig.output {
                syn::ReturnType::Default => "void".into(),
                syn::ReturnType::Type(_, t) => ts_type(t, &mut named),
            };
            let payload = if payload.is_empty() {
                "{}".to_string()
            } else {
                format!("{{ {} }}", payload.join(", "))
            };
            fns.push(format!(
                "  {}: ({}) => invoke<{ret}>(\"{name}\", {payload}),",
                camel(&name),
                params.join(", "),
            ));
            names.push(name);
        }
    }
    let mut out = String::from(
        "// Generated from the #[tauri::command] functions of src-tauri by src-tauri/tests/bindings.rs.\n// Do not edit this file manually.\n",
    );
    for n in &named {
        out.push_str(&format!("import type {{ {n} }} from \"./{n}.js\";\n"));
    }
    out.push_str("import { invoke, channel } from \"../ipc.js\";\n\nexport const commands = {\n");
    out.push_str(&fns.join("\n"));
    out.push_str("\n};\n");
    (out, names)
}

fn read_all(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".ts") {
            out.insert(name, std::fs::read_to_string(e.path()).unwrap());
        }
    }
    out
}

#[test]
fn typescript_bindings_match_the_rust_types() {
    let committed: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui/src/bindings");
    let tmp = tempfile::tempdir().unwrap();
    generate(tmp.path());
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let (commands, names) = commands_ts(&src);
    std::fs::write(tmp.path().join("commands.ts"), &commands).unwrap();
    // Every command the UI can call is registered with Tauri, and the other way round.
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let handler = &lib[lib.find("generate_handler![").expect("generate_handler")..];
    let handler = &handler[..handler.find("])").unwrap()];
    let mut registered: Vec<String> = handler
        .split(|c: char| c == ',' || c == '[' || c.is_whitespace())
        .filter_map(|s| {
            s.rsplit("::")
                .next()
                .filter(|n| !n.is_empty() && s.contains("::"))
        })
        .map(String::from)
        .collect();
    let mut found = names.clone();
    registered.sort();
    found.sort();
    assert_eq!(
        registered, found,
        "generate_handler! and the #[tauri::command] functions differ"
    );
    assert!(commands.contains("sendMessage: (conversationId: number, text: string, onEvent: (event: ReplyEvent) => void) => invoke<Sent>(\"send_message\""), "{commands}");
    let fresh = read_all(tmp.path());
    assert!(fresh.contains_key("EngineEvent.ts") && fresh.contains_key("Settings.ts"));
    assert!(
        fresh["Message.ts"].contains("id: number"),
        "64-bit ids must be numbers: {}",
        fresh["Message.ts"]
    );
    if std::env::var_os("SINKCHAT_UPDATE_BINDINGS").is_some() {
        let _ = std::fs::remove_dir_all(&committed);
        std::fs::create_dir_all(&committed).unwrap();
        for (name, text) in &fresh {
            std::fs::write(committed.join(name), text).unwrap();
        }
        return;
    }
    let old = read_all(&committed);
    assert_eq!(
        old.keys().collect::<Vec<_>>(),
        fresh.keys().collect::<Vec<_>>(),
        "ui/src/bindings is stale: run SINKCHAT_UPDATE_BINDINGS=1 cargo test -p sinkchat-app --test bindings"
    );
    for (name, text) in &fresh {
        assert_eq!(
            &old[name], text,
            "ui/src/bindings/{name} is stale: run SINKCHAT_UPDATE_BINDINGS=1 cargo test -p sinkchat-app --test bindings"
        );
    }
}
