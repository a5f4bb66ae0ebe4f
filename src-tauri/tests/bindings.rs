//! The TypeScript side of the commands is generated, not hand-written: the types of everything
//! the commands send and receive come from the Rust types (ts-rs), `commands.ts` (one typed
//! function per command, with the argument names Tauri expects) from the command table
//! (`sinkchat_chat::commands::COMMANDS`, the table the window's and the browser's doors are
//! generated from), and `constants.ts` from the service's constants. All land in
//! `ui/src/bindings/`; this test regenerates them and fails if the committed files differ.
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
        sinkchat_chat::ErrorCode,
        sinkchat_chat::ModelState,
        sinkchat_chat::Status,
        sinkchat_chat::Sent,
        sinkchat_chat::ReplyEvent,
        sinkchat_chat::ServerState,
        sinkchat_chat::Settings,
        sinkchat_chat::models::ModelsOverview,
        sinkchat_chat::models::DownloadEvent,
        sinkchat_chat::remote::ServerCheck,
        sinkchat_chat::remote::ServerChoice,
        sinkchat_chat::MemoryView,
        sinkchat_chat::meaning::MeaningState,
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

/// `commands.ts`: a typed function for each command of the table.
fn commands_ts() -> String {
    let mut named = std::collections::BTreeSet::new();
    let mut fns = Vec::new();
    let parse = |t: &str| -> syn::Type {
        syn::parse_str(t).unwrap_or_else(|e| panic!("the table's type {t:?}: {e}"))
    };
    for c in sinkchat_chat::commands::COMMANDS {
        let (mut params, mut payload) = (Vec::new(), Vec::new());
        for (arg, ty) in c.args {
            let arg = camel(arg);
            params.push(format!("{arg}: {}", ts_type(&parse(ty), &mut named)));
            payload.push(arg);
        }
        if let Some(ev) = c.events {
            let ev = ts_type(&parse(ev), &mut named);
            params.push(format!("onEvent: (event: {ev}) => void"));
            payload.push("onEvent: channel(onEvent)".into());
        }
        let ret = ts_type(&parse(c.returns), &mut named);
        let payload = if payload.is_empty() {
            "{}".to_string()
        } else {
            format!("{{ {} }}", payload.join(", "))
        };
        fns.push(format!(
            "  {}: ({}) => invoke<{ret}>(\"{}\", {payload}),",
            camel(c.name),
            params.join(", "),
            c.name,
        ));
    }
    let mut out = String::from(
        "// Generated from the command table (crates/chat/src/command_table.rs) by src-tauri/tests/bindings.rs.\n// Do not edit this file manually.\n",
    );
    for n in &named {
        out.push_str(&format!("import type {{ {n} }} from \"./{n}.js\";\n"));
    }
    out.push_str("import { invoke, channel } from \"../ipc.js\";\n\nexport const commands = {\n");
    out.push_str(&fns.join("\n"));
    out.push_str("\n};\n");
    out
}

/// `constants.ts`: the service's figures the UI shows or waits on.
fn constants_ts() -> String {
    format!(
        "// Generated from sinkchat-chat's constants by src-tauri/tests/bindings.rs.\n// Do not edit this file manually.\n\n\
         /** Chats per page of the sidebar. */\nexport const CONVERSATION_PAGE = {};\n\
         /** Messages per page of a chat's transcript. */\nexport const MESSAGE_PAGE = {};\n\
         /** How long a deleted chat can be brought back, in milliseconds. */\nexport const UNDO_WINDOW_MS = {};\n",
        sinkchat_chat::CONVERSATION_PAGE,
        sinkchat_chat::MESSAGE_PAGE,
        sinkchat_chat::UNDO_WINDOW.as_millis(),
    )
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
    let commands = commands_ts();
    std::fs::write(tmp.path().join("commands.ts"), &commands).unwrap();
    std::fs::write(tmp.path().join("constants.ts"), constants_ts()).unwrap();
    assert!(commands.contains("sendMessage: (conversationId: number, text: string, onEvent: (event: ReplyEvent) => void) => invoke<Sent>(\"send_message\""), "{commands}");
    let fresh = read_all(tmp.path());
    assert!(fresh.contains_key("ReplyEvent.ts") && fresh.contains_key("Settings.ts"));
    assert!(
        !fresh.contains_key("EngineEvent.ts"),
        "the UI sees the service's events, not the engine's"
    );
    assert!(
        fresh["ErrorCode.ts"].contains("\"model_loading\""),
        "{}",
        fresh["ErrorCode.ts"]
    );
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
