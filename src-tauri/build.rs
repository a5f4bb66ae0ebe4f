//! The app's own commands get an ACL manifest: Tauri generates `allow-<command>` permissions
//! for each, and only those granted in `capabilities/` reach the page. Without a manifest every
//! app command is open to any page the webview shows. `tests/config.rs` checks that this list
//! is the invoke handler's list.

const COMMANDS: &[&str] = &[
    "app_status",
    "list_conversations",
    "create_conversation",
    "get_messages",
    "rename_conversation",
    "pin_message",
    "delete_conversation",
    "delete_conversation_later",
    "undo_delete",
    "search",
    "send_message",
    "stop_reply",
    "conversation_memory",
    "retry_save",
    "leave_conversation",
    "export_conversations",
    "import_conversations",
    "import_conversations_file",
    "delete_exports",
    "snapshot_usage",
    "diagnostics",
    "regenerate_reply",
    "edit_and_resend",
    "get_settings",
    "save_settings",
    "api_server_state",
    "models_overview",
    "start_download",
    "pause_download",
    "cancel_download",
    "inspect_model_file",
    "import_model",
    "delete_model",
    "use_model",
];

fn main() {
    tauri_build::try_build(
        tauri_build::Attributes::new()
            .app_manifest(tauri_build::AppManifest::new().commands(COMMANDS)),
    )
    .expect("tauri-build");
}
