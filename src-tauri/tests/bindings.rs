//! The TypeScript types of everything the commands send and receive are generated from the
//! Rust types (ts-rs) into `ui/src/bindings/`. This test regenerates them and fails if the
//! committed files differ; `SINKCHAT_UPDATE_BINDINGS=1 cargo test -p sinkchat-app --test
//! bindings` writes them.

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
        sinkchat_app::error::UiError,
        sinkchat_app::state::ModelState,
        sinkchat_app::commands::Status,
        sinkchat_app::commands::Sent,
        sinkchat_app::settings::Settings,
        sinkchat_app::models::ModelsOverview,
        sinkchat_app::models::DownloadEvent,
        sinkchat_engine::EngineEvent,
        sinkchat_engine::ModelSummary,
        sinkchat_store::Conversation,
        sinkchat_store::Message,
        sinkchat_store::SearchHit,
        sinkchat_store::ImportSummary,
    );
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
