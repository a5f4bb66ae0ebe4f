// SinkChat's window: conversations, messages streaming in, the cache gauge.

import { api, errorText, type CacheStats, type Conversation, type EngineEvent, type Message } from "./api.js";
import { gaugeParts } from "./gauge.js";
import { PendingDeletes } from "./undo.js";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const input = $<HTMLTextAreaElement>("message-input");
const sendButton = $<HTMLButtonElement>("send-button");
const stopButton = $<HTMLButtonElement>("stop-button");
const messagesEl = $("messages");
const statusEl = $("status");
const banner = $("error-banner");
const list = $("conversation-list");

let current: Conversation | null = null;
let streaming = false;
const pendingDeletes = new PendingDeletes(6000);
const toast = $("toast");
let toastTimer: ReturnType<typeof setTimeout> | undefined;

function showToast(text: string, undo?: () => void) {
  $("toast-text").textContent = text;
  const b = $<HTMLButtonElement>("toast-undo");
  b.hidden = !undo;
  b.onclick = () => { undo?.(); toast.hidden = true; };
  toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { toast.hidden = true; }, 6000);
}

function deleteConversation(c: Conversation) {
  const commit = async () => {
    try { await api.deleteConversation(c.id); } catch (e) { showError(errorText(e)); }
    await refreshList();
  };
  if (!pendingDeletes.schedule(c.id, commit)) return;
  if (current?.id === c.id) { current = null; messagesEl.replaceChildren(); }
  void refreshList();
  showToast(`Deleted “${c.title}”.`, () => { pendingDeletes.undo(c.id); void refreshList(); });
}

function showError(msg: string | null) {
  banner.hidden = !msg;
  banner.textContent = msg ?? "";
}

function messageEl(m: Pick<Message, "role" | "content" | "status" | "id">): HTMLElement {
  const el = document.createElement("article");
  el.className = `message ${m.role} ${m.status}`;
  el.dataset.id = String(m.id);
  el.setAttribute("aria-label", m.role === "user" ? "You" : "Assistant");
  const body = document.createElement("div");
  body.className = "body";
  body.textContent = m.content; // never innerHTML: model output is untrusted text
  el.append(body);
  if (m.status !== "complete" && m.status !== "streaming") {
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = { stopped: "Stopped", failed: "Failed", interrupted: "Interrupted (the app closed while it was writing)" }[m.status] ?? "";
    el.append(meta);
  }
  return el;
}

function showGauge(s: CacheStats) {
  const g = gaugeParts(s);
  const gauge = $("gauge");
  (gauge.querySelector(".pinned") as HTMLElement).style.width = `${g.pinned * 100}%`;
  (gauge.querySelector(".window") as HTMLElement).style.width = `${g.window * 100}%`;
  (gauge.querySelector(".free") as HTMLElement).style.width = `${g.free * 100}%`;
  gauge.setAttribute("aria-valuenow", String(Math.round((g.pinned + g.window) * 100)));
  $("gauge-text").textContent = g.label;
  if (s.evicted_last_step > 0) {
    gauge.classList.remove("evicting");
    void gauge.offsetWidth;
    gauge.classList.add("evicting");
  }
}

function showMemoryLine(firstVisible: number | null) {
  document.querySelectorAll(".memory-line").forEach((e) => e.remove());
  if (firstVisible === null) return;
  const first = messagesEl.querySelector(`[data-id="${firstVisible}"]`);
  if (!first || first === messagesEl.querySelector(".message")) return;
  const line = document.createElement("div");
  line.className = "memory-line";
  line.textContent = "The model no longer sees the messages above this line (they stay saved here).";
  first.before(line);
}

async function refreshList() {
  const convs = (await api.listConversations()).filter((c) => !pendingDeletes.isPending(c.id));
  list.replaceChildren(
    ...convs.map((c) => {
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.type = "button";
      b.className = "open";
      b.textContent = c.title;
      b.setAttribute("aria-current", String(c.id === current?.id));
      b.addEventListener("click", () => openConversation(c));
      const del = document.createElement("button");
      del.type = "button";
      del.className = "delete";
      del.textContent = "×";
      del.title = "Delete this chat (you can undo for a few seconds)";
      del.setAttribute("aria-label", `Delete “${c.title}”`);
      del.addEventListener("click", () => deleteConversation(c));
      li.append(b, del);
      return li;
    }),
  );
}

async function openConversation(c: Conversation) {
  // The chat left behind parks its memory on disk; it comes back at once when reopened.
  if (current && current.id !== c.id && !streaming) void api.leave(current.id).catch(() => {});
  current = c;
  const msgs = await api.messages(c.id);
  messagesEl.replaceChildren(...msgs.map(messageEl));
  messagesEl.scrollTop = messagesEl.scrollHeight;
  await refreshList();
}

function setStreaming(on: boolean) {
  streaming = on;
  sendButton.hidden = on;
  stopButton.hidden = !on;
}

async function send() {
  const text = input.value;
  if (streaming) return;
  if (!text.trim()) {
    showError("Type a message first.");
    return;
  }
  showError(null);
  if (!current) current = await api.createConversation();
  const conv = current;
  const placeholder = messageEl({ id: -1, role: "assistant", content: "", status: "streaming" });
  const body = placeholder.querySelector(".body") as HTMLElement;
  let pendingText = "";
  let frame = 0;
  const flush = () => { frame = 0; body.textContent += pendingText; pendingText = ""; messagesEl.scrollTop = messagesEl.scrollHeight; };
  setStreaming(true);
  try {
    const sent = await api.send(conv.id, text, (e: EngineEvent) => {
      switch (e.kind) {
        case "memory":
          if (e.source === "snapshot") statusEl.textContent = "Memory of this chat restored from disk";
          else if (e.source === "rebuilt") statusEl.textContent = "Re-reading the end of this chat…";
          break;
        case "prefill": statusEl.textContent = `Reading… ${e.done}/${e.total} tokens`; break;
        case "token":
          pendingText += e.text;
          if (!frame) frame = requestAnimationFrame(flush);
          break;
        case "cache": showGauge(e.stats); showMemoryLine(e.first_visible_message); break;
        case "done":
          flush();
          placeholder.classList.remove("streaming");
          placeholder.classList.add(e.reason === "cancelled" ? "stopped" : "complete");
          statusEl.textContent = `${e.tokens} tokens · ${e.tokens_per_s.toFixed(1)} tokens/s`;
          setStreaming(false);
          void refreshList();
          break;
        case "error":
          flush();
          placeholder.classList.add("failed");
          showError(`The reply failed: ${e.message}`);
          setStreaming(false);
          break;
      }
    });
    input.value = "";
    messagesEl.append(messageEl(sent.user_message));
    placeholder.dataset.id = String(sent.reply_id);
    messagesEl.append(placeholder);
    messagesEl.scrollTop = messagesEl.scrollHeight;
  } catch (e) {
    setStreaming(false);
    showError(errorText(e)); // the typed text stays in the box: nothing is lost
  }
}

async function pollModel() {
  const s = await api.status();
  if (s.model.state === "ready") {
    statusEl.textContent = `${s.model.info.name} · ${s.model.info.device}`;
  } else if (s.model.state === "failed") {
    statusEl.textContent = "No model";
    showError(s.model.error.message);
  } else {
    statusEl.textContent = "Loading the model…";
    setTimeout(pollModel, 300);
  }
}

$("composer").addEventListener("submit", (e) => { e.preventDefault(); void send(); });
input.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); void send(); }
});
stopButton.addEventListener("click", () => { if (current) void api.stop(current.id); });
$("new-chat").addEventListener("click", async () => {
  if (current && !streaming) void api.leave(current.id).catch(() => {});
  current = await api.createConversation();
  messagesEl.replaceChildren();
  await refreshList();
  input.focus();
});
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape" && streaming && current) void api.stop(current.id);
});

$("export-chat").addEventListener("click", async () => {
  if (!current) { showError("Open a chat to export it."); return; }
  try { showToast(`Saved to ${await api.exportConversations([current.id], "markdown")}`); } catch (e) { showError(errorText(e)); }
});
$("export-all").addEventListener("click", async () => {
  try { showToast(`Saved to ${await api.exportConversations(null, "json")}`); } catch (e) { showError(errorText(e)); }
});
$<HTMLInputElement>("import-file").addEventListener("change", async (ev) => {
  const f = (ev.target as HTMLInputElement).files?.[0];
  if (!f) return;
  try {
    const r = await api.importConversations(await f.text());
    showToast(`Imported ${r.conversations} chat(s), ${r.messages} message(s).`);
    await refreshList();
  } catch (e) { showError(errorText(e)); }
  (ev.target as HTMLInputElement).value = "";
});
window.addEventListener("beforeunload", () => { void pendingDeletes.flush(); });

void pollModel();
void refreshList();
