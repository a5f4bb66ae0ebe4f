// Calls into the Rust backend. The command functions and every payload type come from
// ui/src/bindings, generated from the Rust side (see src-tauri/tests/bindings.rs).

import type { UiError } from "./bindings/UiError.js";
import type { Conversation } from "./bindings/Conversation.js";
import type { Message } from "./bindings/Message.js";
import type { ReplyEvent } from "./bindings/ReplyEvent.js";
import type { Status } from "./bindings/Status.js";
import type { Sent } from "./bindings/Sent.js";
import type { SearchHit } from "./bindings/SearchHit.js";
import type { Settings } from "./bindings/Settings.js";
import type { ModelsOverview } from "./bindings/ModelsOverview.js";
import type { DownloadEvent } from "./bindings/DownloadEvent.js";
import type { ModelSummary } from "./bindings/ModelSummary.js";
import type { InstalledModel } from "./bindings/InstalledModel.js";
import { commands } from "./bindings/commands.js";
import { t } from "./strings.js";
import { plainError } from "./plain.js";

export type { UiError, Conversation, Message, ReplyEvent, Status, Sent, SearchHit, Settings, ModelsOverview, DownloadEvent, ModelSummary, InstalledModel };
export type { Gauge } from "./bindings/Gauge.js";

/** The calls the screens make, by the names they use; each is a generated command function. */
export const api = {
  status: commands.appStatus,
  /** One page (50, newest first) of chats older than `before` (`[updated_at, id]` of the last one shown). */
  listConversations: (before?: [number, number] | null) => commands.listConversations(before?.[0] ?? null, before?.[1] ?? null),
  createConversation: commands.createConversation,
  /** The newest page (200) of a chat's messages before `beforeId` (none: the latest), oldest first. */
  messages: (conversationId: number, beforeId?: number | null) => commands.getMessages(conversationId, beforeId ?? null),
  retrySave: commands.retrySave,
  rename: commands.renameConversation,
  pinMessage: commands.pinMessage,
  deleteConversation: commands.deleteConversation,
  deleteLater: commands.deleteConversationLater,
  undoDelete: commands.undoDelete,
  search: commands.search,
  leave: commands.leaveConversation,
  exportConversations: (ids: number[] | null, format: "json" | "markdown") => commands.exportConversations(ids, format),
  importConversations: commands.importConversations,
  importConversationsFile: commands.importConversationsFile,
  deleteExports: commands.deleteExports,
  snapshotUsage: commands.snapshotUsage,
  meaningState: commands.meaningState,
  diagnostics: commands.diagnostics,
  stop: commands.stopReply,
  memory: commands.conversationMemory,
  send: commands.sendMessage,
  regenerate: commands.regenerateReply,
  editAndResend: commands.editAndResend,
  settings: commands.getSettings,
  saveSettings: commands.saveSettings,
  apiServerState: commands.apiServerState,
  models: commands.modelsOverview,
  startDownload: commands.startDownload,
  pauseDownload: commands.pauseDownload,
  cancelDownload: commands.cancelDownload,
  inspectModel: commands.inspectModelFile,
  importModel: commands.importModel,
  deleteModel: commands.deleteModel,
  useModel: commands.useModel,
  checkServer: commands.checkServer,
  useServer: commands.useServer,
};

/// Any thrown value as a sentence for the user, with a way forward when there is one.
export function errorText(e: unknown): string {
  if (e && typeof e === "object" && "message" in e) {
    const err = e as UiError;
    return plainError(String(err.message), t.hint[err.code]);
  }
  return plainError(String(e));
}
