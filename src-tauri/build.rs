//! The app's own commands get an ACL manifest: Tauri generates `allow-<command>` permissions
//! for each, and only those granted in `capabilities/` reach the page. Without a manifest every
//! app command is open to any page the webview shows. The list is the window's entries of the
//! command table (`crates/chat/src/command_table.rs`, included here), the same table the
//! invoke handler is generated from; `tests/config.rs` checks the capability against it.

include!("../crates/chat/src/command_table.rs");

macro_rules! window_names {
    ($( $door:ident $name:ident |$svc:ident $(, $arg:ident : $ty:ty)*| -> $ret:ty
        $(, $cb:ident : $ev:ty)? $body:block )*) => {
        &[$((stringify!($door), stringify!($name))),*]
    };
}

fn main() {
    println!("cargo::rerun-if-changed=../crates/chat/src/command_table.rs");
    let all: &[(&str, &str)] = for_each_command!(window_names);
    let commands: Vec<&str> = all
        .iter()
        .filter(|(door, _)| *door != "browser")
        .map(|(_, name)| *name)
        .collect();
    tauri_build::try_build(
        tauri_build::Attributes::new()
            .app_manifest(tauri_build::AppManifest::new().commands(commands.leak())),
    )
    .expect("tauri-build");
}
