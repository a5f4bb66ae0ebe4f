// Calls into the Rust backend. Tauri's global API (withGlobalTauri) provides invoke and Channel.

export interface UiError { code: string; message: string }
export interface Conversation { id: number; title: string; model: string; system_prompt: string; created_at: number; updated_at: number }
export type Status = "complete" | "streaming" | "stopped" | "failed" | "interrupted";
export interface Message { id: number; conversation_id: number; role: "user" | "assistant" | "system"; content: string; status: Status; error: string | null; tokens: number | null }
export interface CacheStats { capacity: number; pinned: number; pinned_used: number; window: number; window_used: number; tokens_seen: number; evicted_total: number; evicted_last_step: number; window_start: number; bytes: number; device: string }
export type EngineEvent =
  | { kind: "memory"; source: "live" | "snapshot" | "rebuilt" }
  | { kind: "prefill"; done: number; total: number }
  | { kind: "token"; text: string }
  | { kind: "cache"; stats: CacheStats; first_visible_message: number | null }
  | { kind: "done"; reason: string; tokens: number; tokens_per_s: number; prompt_tokens: number }
  | { kind: "error"; code: string; message: string };
export type ModelState =
  | { state: "loading" }
  | { state: "ready"; info: { name: string; device: string; weights: string } }
  | { state: "failed"; error: UiError };

interface TauriGlobal {
  core: {
    invoke<T>(cmd: string, args?: Record<string, unknown>): Promise<T>;
    Channel: new <T>() => { onmessage: (m: T) => void };
  };
}
const tauri = (window as unknown as { __TAURI__: TauriGlobal }).__TAURI__;

export const api = {
  status: () => tauri.core.invoke<{ model: ModelState; data_dir: string; database: string }>("app_status"),
  listConversations: () => tauri.core.invoke<Conversation[]>("list_conversations", {}),
  createConversation: () => tauri.core.invoke<Conversation>("create_conversation"),
  messages: (conversationId: number) => tauri.core.invoke<Message[]>("get_messages", { conversationId }),
  deleteConversation: (conversationId: number) => tauri.core.invoke<void>("delete_conversation", { conversationId }),
  leave: (conversationId: number) => tauri.core.invoke<void>("leave_conversation", { conversationId }),
  exportConversations: (conversationIds: number[] | null, format: "json" | "markdown") =>
    tauri.core.invoke<string>("export_conversations", { conversationIds, format }),
  importConversations: (text: string) =>
    tauri.core.invoke<{ conversations: number; messages: number }>("import_conversations", { text }),
  stop: (conversationId: number) => tauri.core.invoke<boolean>("stop_reply", { conversationId }),
  send(conversationId: number, text: string, onEvent: (e: EngineEvent) => void) {
    const channel = new tauri.core.Channel<EngineEvent>();
    channel.onmessage = onEvent;
    return tauri.core.invoke<{ user_message: Message; reply_id: number }>("send_message", { conversationId, text, onEvent: channel });
  },
};

/// Any thrown value as a sentence for the user.
export function errorText(e: unknown): string {
  if (e && typeof e === "object" && "message" in e) return String((e as UiError).message);
  return String(e);
}
