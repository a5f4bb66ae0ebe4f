// Calls into the Rust backend. Every payload type comes from ui/src/bindings, generated from the
// Rust types by ts-rs (see src-tauri/tests/bindings.rs). Tauri's global API (withGlobalTauri)
// provides invoke and Channel.

import type { UiError } from "./bindings/UiError.js";
import type { Conversation } from "./bindings/Conversation.js";
import type { Message } from "./bindings/Message.js";
import type { EngineEvent } from "./bindings/EngineEvent.js";
import type { Status } from "./bindings/Status.js";
import type { Sent } from "./bindings/Sent.js";
import type { SearchHit } from "./bindings/SearchHit.js";
import type { ImportSummary } from "./bindings/ImportSummary.js";
import type { Settings } from "./bindings/Settings.js";
import type { ModelsOverview } from "./bindings/ModelsOverview.js";
import type { DownloadEvent } from "./bindings/DownloadEvent.js";
import type { ModelSummary } from "./bindings/ModelSummary.js";
import type { InstalledModel } from "./bindings/InstalledModel.js";
import { t } from "./strings.js";

export type { UiError, Conversation, Message, EngineEvent, Status, Sent, SearchHit, Settings, ModelsOverview, DownloadEvent, ModelSummary, InstalledModel };
export type { CacheStats } from "./bindings/CacheStats.js";

interface TauriGlobal {
  core: {
    invoke<T>(cmd: string, args?: Record<string, unknown>): Promise<T>;
    Channel: new <T>() => { onmessage: (m: T) => void };
  };
}
const tauri = () => (window as unknown as { __TAURI__: TauriGlobal }).__TAURI__;
const invoke = <T>(cmd: string, args?: Record<string, unknown>) => tauri().core.invoke<T>(cmd, args);
function channel<T>(on: (m: T) => void) {
  const c = new (tauri().core.Channel)<T>();
  c.onmessage = on;
  return c;
}

export const api = {
  status: () => invoke<Status>("app_status"),
  listConversations: () => invoke<Conversation[]>("list_conversations", {}),
  createConversation: () => invoke<Conversation>("create_conversation"),
  messages: (conversationId: number) => invoke<Message[]>("get_messages", { conversationId }),
  rename: (conversationId: number, title: string) => invoke<void>("rename_conversation", { conversationId, title }),
  deleteConversation: (conversationId: number) => invoke<void>("delete_conversation", { conversationId }),
  search: (query: string) => invoke<SearchHit[]>("search", { query }),
  leave: (conversationId: number) => invoke<void>("leave_conversation", { conversationId }),
  exportConversations: (conversationIds: number[] | null, format: "json" | "markdown") =>
    invoke<string>("export_conversations", { conversationIds, format }),
  importConversations: (text: string) => invoke<ImportSummary>("import_conversations", { text }),
  stop: (conversationId: number) => invoke<boolean>("stop_reply", { conversationId }),
  send: (conversationId: number, text: string, on: (e: EngineEvent) => void) =>
    invoke<Sent>("send_message", { conversationId, text, onEvent: channel(on) }),
  regenerate: (conversationId: number, on: (e: EngineEvent) => void) =>
    invoke<Sent>("regenerate_reply", { conversationId, onEvent: channel(on) }),
  editAndResend: (conversationId: number, text: string, on: (e: EngineEvent) => void) =>
    invoke<Sent>("edit_and_resend", { conversationId, text, onEvent: channel(on) }),
  settings: () => invoke<Settings>("get_settings"),
  saveSettings: (settings: Settings) => invoke<Settings>("save_settings", { settings }),
  models: () => invoke<ModelsOverview>("models_overview"),
  startDownload: (repo: string, file: string, on: (e: DownloadEvent) => void) =>
    invoke<string>("start_download", { repo, file, onEvent: channel(on) }),
  pauseDownload: (key: string) => invoke<boolean>("pause_download", { key }),
  cancelDownload: (key: string) => invoke<void>("cancel_download", { key }),
  inspectModel: (path: string) => invoke<ModelSummary>("inspect_model_file", { path }),
  importModel: (path: string) => invoke<InstalledModel>("import_model", { path }),
  deleteModel: (file: string) => invoke<number>("delete_model", { file }),
  useModel: (file: string) => invoke<void>("use_model", { file }),
};

/// Any thrown value as a sentence for the user, with a way forward when there is one.
export function errorText(e: unknown): string {
  if (e && typeof e === "object" && "message" in e) {
    const err = e as UiError;
    const hint = t.hint[err.code];
    const msg = String(err.message);
    const sentence = msg.charAt(0).toUpperCase() + msg.slice(1);
    return hint ? `${sentence.replace(/\.?$/, ".")} ${hint}` : sentence;
  }
  return String(e);
}
