// The app's commands, once: the window's Tauri commands and its ACL list (`src-tauri`), the
// browser door's dispatch (`sinkchat-server`), and the TypeScript functions
// (`ui/src/bindings/commands.ts`) are all generated from this table, so the doors cannot
// drift apart and a renamed argument is renamed everywhere. (This file holds the table alone:
// `src-tauri/build.rs` includes it to list the commands for the ACL.)
//
// `for_each_command!(m)` calls the macro `m` with every entry:
//
//     door name |svc, arg: Type, ...| -> Return { body }
//     door name |svc, arg: Type, ...| -> Return, on_event: Event { body }
//
// `door` is `both`, `window` (a path the window's file picker gives) or `browser` (text the
// page uploads). The body is an async block's content over `svc: &ChatService` and the
// arguments, returning `UiResult<Return>`; a streaming command's body also has `on_event`, a
// callback of `Event`s that the door forwards (a Tauri channel, server-sent events).
// Arguments arrive by their camelCase names (`conversation_id` is `conversationId`), as
// Tauri names them; an `Option` may be left out. Types and constants are named as
// `sinkchat_chat::commands::types` exports them: a door glob-imports that module where it
// expands the table.

/// Calls `$m!` with every command of the app (see `command_table.rs`).
#[macro_export]
macro_rules! for_each_command {
    ($m:ident) => {
        $m! {
            both app_status |svc| -> Status { Ok(svc.status()) }
            both list_conversations |svc, before_updated: Option<i64>, before_id: Option<i64>|
                -> Vec<Conversation>
                { svc.list_conversations(before_updated.zip(before_id)).await }
            both create_conversation |svc| -> Conversation
                { svc.create_conversation().await }
            both get_messages |svc, conversation_id: i64, before_id: Option<i64>|
                -> Vec<Message>
                { svc.messages(conversation_id, before_id).await }
            both rename_conversation |svc, conversation_id: i64, title: String| -> ()
                { svc.rename(conversation_id, &title).await }
            both pin_message |svc, conversation_id: i64, message_id: i64, pinned: bool|
                -> Message
                { svc.pin_message(conversation_id, message_id, pinned).await }
            both delete_conversation |svc, conversation_id: i64| -> ()
                { svc.delete(conversation_id).await }
            both delete_conversation_later |svc, conversation_id: i64| -> ()
                { svc.delete_later(conversation_id, UNDO_WINDOW); Ok(()) }
            both undo_delete |svc, conversation_id: i64| -> bool
                { Ok(svc.undo_delete(conversation_id)) }
            both search |svc, query: String| -> Vec<SearchHit>
                { svc.search(&query).await }
            both send_message |svc, conversation_id: i64, text: String|
                -> Sent, on_event: ReplyEvent
                { svc.send(conversation_id, &text, ReplyOptions::default(), on_event).await }
            both regenerate_reply |svc, conversation_id: i64|
                -> Sent, on_event: ReplyEvent
                { svc.regenerate(conversation_id, on_event).await }
            both edit_and_resend |svc, conversation_id: i64, text: String|
                -> Sent, on_event: ReplyEvent
                { svc.edit_and_resend(conversation_id, &text, on_event).await }
            both stop_reply |svc, conversation_id: i64| -> bool
                { Ok(svc.stop(conversation_id)) }
            both retry_save |svc, reply_id: i64| -> bool
                { svc.retry_save(reply_id).await }
            both conversation_memory |svc, conversation_id: i64| -> Option<MemoryView>
                { Ok(svc.memory(conversation_id).await) }
            both leave_conversation |svc, conversation_id: i64| -> ()
                { svc.leave(conversation_id); Ok(()) }
            both export_conversations |svc, conversation_ids: Option<Vec<i64>>, format: String|
                -> String
                { svc.export_conversations(conversation_ids.as_deref(), &format).await }
            browser import_conversations |svc, text: String| -> ImportSummary
                { svc.import_conversations(&text).await }
            window import_conversations_file |svc, path: String|
                -> ImportSummary
                { svc.import_conversations_file(&path).await }
            both delete_exports |svc| -> usize { svc.delete_exports().await }
            both snapshot_usage |svc| -> SnapshotUsage
                { Ok(svc.snapshot_usage().await) }
            both meaning_state |svc| -> MeaningState { Ok(svc.meaning_state().await) }
            both diagnostics |svc| -> String { Ok(svc.diagnostics().await) }
            both get_settings |svc| -> Settings { Ok(svc.settings().await) }
            both save_settings |svc, settings: Settings| -> Settings
                { svc.save_settings(settings).await }
            both api_server_state |svc| -> ServerState { Ok(svc.server_state()) }
            both models_overview |svc| -> ModelsOverview
                { svc.models_overview().await }
            both start_download |svc, repo: String, file: String|
                -> String, on_event: DownloadEvent
                { svc.start_download(&repo, &file, on_event).await }
            both pause_download |svc, key: String| -> bool { Ok(svc.pause_download(&key)) }
            both cancel_download |svc, key: String| -> () { svc.cancel_download(&key) }
            both inspect_model_file |svc, path: String| -> ModelSummary
                { svc.inspect_model_file(&path).await }
            both import_model |svc, path: String| -> InstalledModel
                { svc.import_model(&path).await }
            both delete_model |svc, file: String| -> u64 { svc.delete_model(&file) }
            both use_model |svc, file: String| -> () { svc.use_model(&file).await }
            both check_server |svc, address: String, key: Option<String>| -> ServerCheck
                { svc.check_server(&address, key.as_deref()).await }
            both use_server
                |svc, address: String, key: Option<String>, model: String, context: Option<usize>|
                -> ServerChoice
                { svc.use_server(&address, key.as_deref(), &model, context).await }
        }
    };
}
