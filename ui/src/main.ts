// SinkChat's window: conversations, messages streaming in, the cache gauge, search, and the
// Models and Settings screens (models.ts, settings.ts).

import { api, errorText, type Gauge, type Conversation, type ReplyEvent, type Message, type Sent, type SearchHit } from "./api.js";
import { gaugeParts, Timeline } from "./gauge.js";
import { renderMarkdown, StreamingMarkdown } from "./markdown.js";
import { snippetParts } from "./search.js";
import { PendingDeletes } from "./undo.js";
import { CONVERSATION_PAGE, MESSAGE_PAGE, UNDO_WINDOW_MS } from "./bindings/constants.js";
import { t } from "./strings.js";
import { $, el, button, applyStrings, showBanner, showToast, copyText } from "./dom.js";
import { initModels, showModels, recommendedDownload } from "./models.js";
import { initSettings, showSettings, applyTheme, settingsUnsaved } from "./settings.js";
import { inWindow, openExternal, pickFile } from "./ipc.js";

const input = $<HTMLTextAreaElement>("message-input");
const sendButton = $<HTMLButtonElement>("send-button");
const stopButton = $<HTMLButtonElement>("stop-button");
const messagesEl = $("messages");
const statusEl = $("status");
const list = $("conversation-list");
const searchBox = $<HTMLInputElement>("search");
const results = $("search-results");
const jump = $<HTMLButtonElement>("jump-latest");

let current: Conversation | null = null;
let streaming = false;
let editing = false;
let stickToBottom = true;
const pendingDeletes = new PendingDeletes(UNDO_WINDOW_MS);
const timelines = new Map<number, Timeline>();
// Each chat's gauge timeline is kept with the chat in the page's storage (numbers only: tokens
// seen, fill, evictions), so it survives a restart; saved a second after it last changed.
const timelineKey = (id: number) => `sinkchat.timeline.${id}`;
function timelineOf(id: number): Timeline {
  let tl = timelines.get(id);
  if (!tl) {
    let saved: string | null = null;
    try { saved = localStorage.getItem(timelineKey(id)); } catch { /* no storage */ }
    tl = Timeline.restore(saved);
    timelines.set(id, tl);
  }
  return tl;
}
const timelineSaves = new Map<number, ReturnType<typeof setTimeout>>();
function saveTimelineSoon(id: number) {
  clearTimeout(timelineSaves.get(id));
  timelineSaves.set(id, setTimeout(() => {
    timelineSaves.delete(id);
    const tl = timelines.get(id);
    try { if (tl) localStorage.setItem(timelineKey(id), JSON.stringify(tl.samples)); } catch { /* full or off */ }
  }, 1000));
}
function forgetTimeline(id: number) {
  clearTimeout(timelineSaves.get(id));
  timelines.delete(id);
  try { localStorage.removeItem(timelineKey(id)); } catch { /* no storage */ }
}

const showError = (msg: string | null) => showBanner("error-banner", msg);

// ---------- messages ----------

const markdownOptions = () => ({ copyLabel: t.copy, copiedLabel: t.copied, onCopy: copyText });

function renderBody(body: HTMLElement, m: Pick<Message, "role" | "content">) {
  if (m.role === "user") { body.textContent = m.content; return; } // the user's words, as typed
  body.replaceChildren(renderMarkdown(document, m.content, markdownOptions()));
}

function messageEl(m: Pick<Message, "role" | "content" | "status" | "id"> & { pinned?: boolean; recalled?: number[] }): HTMLElement {
  const art = el("article", { cls: `message ${m.role} ${m.status}`, attrs: { "aria-label": m.role === "user" ? t.you : t.assistant } });
  art.dataset.id = String(m.id);
  const body = el("div", { cls: "body" });
  renderBody(body, m);
  art.append(body);
  const meta = t.status[m.status];
  if (meta) art.append(el("span", { cls: "meta", text: meta }));
  const tools = el("div", { cls: "msg-tools" });
  tools.append(button(t.copy, () => void copyText(art.dataset.raw ?? m.content), "copy-msg", `${t.copy}: ${m.role === "user" ? t.you : t.assistant}`));
  const pin = button(t.pin, () => void togglePin(art), "pin");
  pin.title = t.pinHelp; // said before the click (#34)
  tools.append(pin);
  art.dataset.raw = m.content;
  art.append(tools);
  setPinned(art, m.pinned ?? false);
  if (m.recalled?.length) markRecall(art, m.recalled);
  return art;
}

/** A reply that was given back earlier messages (recall): a note on it, which says on hover
 *  what that means, and a mark on each of those messages shown in the transcript. */
function markRecall(art: HTMLElement, ids: number[]) {
  art.classList.add("used-recall");
  art.dataset.recalled = ids.join(",");
  art.querySelector(".recall-note")?.remove();
  const note = el("span", { cls: "recall-note", text: t.usedRecall(ids.length), attrs: { title: t.usedRecallHelp, tabindex: "0" } });
  art.prepend(note);
  markRecalledMessages();
}

/** Marks the messages on screen that some reply recalled. */
function markRecalledMessages() {
  const ids = new Set<string>();
  messagesEl.querySelectorAll<HTMLElement>(".message.used-recall").forEach((a) => a.dataset.recalled?.split(",").forEach((i) => ids.add(i)));
  messagesEl.querySelectorAll<HTMLElement>(".message").forEach((a) => {
    const on = ids.has(a.dataset.id ?? "");
    if (on === a.classList.contains("recalled")) return;
    a.classList.toggle("recalled", on);
    a.querySelector(".recalled-mark")?.remove();
    if (on) a.querySelector(".body")!.before(el("span", { cls: "recalled-mark", text: t.recalledMark }));
  });
}

/** A pin, drawn (an emoji shows as an empty box where no emoji font is installed). */
function pinIcon(): SVGSVGElement {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 16 16");
  svg.setAttribute("aria-hidden", "true");
  svg.classList.add("pin-icon");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", "M5 1h6v1.5l-1 1v3.2l2.5 2.3v1.5H8.8V15L8 16l-.8-1v-4.5H3.5V9L6 6.7V3.5l-1-1z");
  svg.append(path);
  return svg;
}

/** Shows a message as pinned (kept in the model's memory with the system prompt) or not. */
function setPinned(art: HTMLElement, on: boolean) {
  art.classList.toggle("pinned", on);
  const b = art.querySelector<HTMLButtonElement>(".msg-tools .pin")!;
  b.textContent = on ? t.unpin : t.pin;
  b.title = on ? "" : t.pinHelp;
  b.setAttribute("aria-pressed", String(on));
  art.querySelector(".pin-mark")?.remove();
  if (on) art.prepend(el("span", { cls: "pin-mark" }, pinIcon(), t.pinnedMark));
}

async function togglePin(art: HTMLElement) {
  const conv = current;
  const id = Number(art.dataset.id);
  if (!conv || !(id > 0)) return;
  try {
    const m = await api.pinMessage(conv.id, id, !art.classList.contains("pinned"));
    setPinned(art, m.pinned);
    showError(null);
    showToast(m.pinned ? t.pinnedToast : t.unpinnedToast);
  } catch (e) { showError(errorText(e)); }
}

/** Regenerate on the last reply, Edit on the last user message; nowhere else. */
function refreshMessageTools() {
  messagesEl.querySelectorAll(".regenerate, .edit").forEach((b) => b.remove());
  if (streaming || !current) return;
  const arts = [...messagesEl.querySelectorAll<HTMLElement>(".message")];
  const lastUser = [...arts].reverse().find((a) => a.classList.contains("user"));
  const lastReply = arts[arts.length - 1];
  if (lastReply?.classList.contains("assistant")) {
    lastReply.querySelector(".msg-tools")!.append(button(t.regenerate, () => void regenerate(), "regenerate"));
  }
  if (lastUser) lastUser.querySelector(".msg-tools")!.append(button(t.edit, () => startEdit(lastUser.dataset.raw ?? ""), "edit"));
}

function scrollToEnd(force = false) {
  if (force || stickToBottom) messagesEl.scrollTop = messagesEl.scrollHeight;
  jump.hidden = stickToBottom || !streaming;
}

messagesEl.addEventListener("scroll", () => {
  stickToBottom = messagesEl.scrollHeight - messagesEl.scrollTop - messagesEl.clientHeight < 48;
  jump.hidden = stickToBottom || !streaming;
});
jump.textContent = t.jumpToLatest;
jump.addEventListener("click", () => { stickToBottom = true; scrollToEnd(true); });

// ---------- gauge ----------

/** The gauge of the open chat as the model holds it now: on opening a chat, and while the
 *  window is not streaming (another app may be talking to this chat over the local server). */
async function refreshGauge() {
  const id = current?.id;
  if (id === undefined) { clearGauge(); return; }
  const m = await api.memory(id).catch(() => null);
  if (current?.id !== id || streaming) return;
  if (m) { showGauge(m.stats, false); showMemoryLine(m.first_visible_message); } else clearGauge();
}

function clearGauge() {
  const gauge = $("gauge");
  for (const part of [".pinned", ".pins", ".window", ".recalled"]) (gauge.querySelector(part) as HTMLElement).style.width = "0%";
  (gauge.querySelector(".free") as HTMLElement).style.width = "100%";
  gauge.setAttribute("aria-valuenow", "0");
  $("gauge-text").textContent = "";
  $("gauge-words").textContent = "";
  $("gauge-help").textContent = t.gaugeTitle;
}
setInterval(() => { if (!streaming && !document.hidden) void refreshGauge(); }, 1500);

function showGauge(s: Gauge, flash = true) {
  const g = gaugeParts(s);
  const gauge = $("gauge");
  for (const part of ["pinned", "pins", "window", "recalled", "free"] as const) {
    (gauge.querySelector(`.${part}`) as HTMLElement).style.width = `${g[part] * 100}%`;
  }
  gauge.setAttribute("aria-valuenow", String(Math.round((1 - g.free) * 100)));
  $("gauge-help").textContent = g.pinsNote ? `${t.gaugeTitle} ${g.pinsNote}` : t.gaugeTitle;
  gauge.dataset.evicted = String(s.evicted_total);
  $("gauge-text").textContent = g.label;
  $("gauge-words").textContent = g.words;
  // The first time a chat's memory lets words go (ever, on this computer), say what it means.
  if (flash && s.evicted_total > 0 && s.evicted_last_step > 0) {
    let told = false;
    try { told = localStorage.getItem("sinkchat.firstForgetTold") === "1"; } catch { /* no storage */ }
    if (!told) {
      showBanner("forget-note", t.firstForget);
      try { localStorage.setItem("sinkchat.firstForgetTold", "1"); } catch { /* no storage */ }
    }
  }
  if (flash && s.evicted_last_step > 0) {
    gauge.classList.remove("evicting");
    void gauge.offsetWidth;
    gauge.classList.add("evicting");
  }
  if (current) {
    const tl = timelineOf(current.id);
    tl.add(s);
    drawTimeline(tl);
    saveTimelineSoon(current.id);
  }
}

function drawTimeline(tl: Timeline | undefined) {
  const svg = $("timeline");
  const { line, evictions } = tl ? tl.geometry(160, 24) : { line: "", evictions: [] };
  svg.querySelector(".fill-line")!.setAttribute("points", line);
  const g = svg.querySelector(".evictions")!;
  g.replaceChildren(...evictions.map((x) => {
    const l = document.createElementNS("http://www.w3.org/2000/svg", "line");
    l.setAttribute("x1", x.toFixed(1)); l.setAttribute("x2", x.toFixed(1));
    l.setAttribute("y1", "20"); l.setAttribute("y2", "24");
    return l;
  }));
}

let lastFirstVisible: number | null = null;
function showMemoryLine(firstVisible: number | null) {
  lastFirstVisible = firstVisible;
  document.querySelectorAll(".memory-line").forEach((e) => e.remove());
  if (firstVisible === null) return;
  const first = messagesEl.querySelector(`[data-id="${firstVisible}"]`);
  if (!first || first === messagesEl.querySelector(".message")) return;
  const line = el("div", { cls: "memory-line", text: t.memoryLine, attrs: { role: "note", title: t.gaugeTitle } });
  first.before(line);
}

// ---------- conversations ----------

/** The backend's page of chats; the sidebar shows `pages` of them and offers the next. */
const PAGE = CONVERSATION_PAGE;
let pages = 1;

async function refreshList() {
  const all: Conversation[] = [];
  let before: [number, number] | null = null;
  let more = false;
  for (let i = 0; i < pages; i++) {
    const page = await api.listConversations(before);
    all.push(...page);
    more = page.length === PAGE;
    if (!more) break;
    const last = page[page.length - 1];
    before = [last.updated_at, last.id];
  }
  const convs = all.filter((c) => !pendingDeletes.isPending(c.id));
  const older = more ? [el("li", { cls: "older" }, button(t.olderChats, () => { pages += 1; void refreshList(); }, "older"))] : [];
  list.replaceChildren(...convs.map((c) => {
    const li = el("li");
    const open = button(c.title, () => void openConversation(c), "open");
    open.setAttribute("aria-current", String(c.id === current?.id));
    open.title = c.title;
    const ren = button("✎", () => void renameConversation(c), "rename", `${t.rename}: ${c.title}`);
    ren.title = t.rename;
    const del = button("×", () => deleteConversation(c), "delete", `${t.delete}: ${c.title}`);
    del.title = t.deleteChat;
    li.append(open, ren, del);
    return li;
  }), ...older);
}

async function renameConversation(c: Conversation) {
  const title = window.prompt(t.renamePrompt, c.title);
  if (title === null || !title.trim()) return;
  try { await api.rename(c.id, title.trim()); } catch (e) { showError(errorText(e)); }
  if (current?.id === c.id) current.title = title.trim();
  await refreshList();
}

/** The backend deletes the chat when the undo window ends, or when the app closes first; the
 *  window only hides it meanwhile. */
function deleteConversation(c: Conversation) {
  if (!pendingDeletes.schedule(c.id, () => { forgetTimeline(c.id); return refreshList(); })) return;
  void api.deleteLater(c.id).catch((e) => { pendingDeletes.undo(c.id); showError(errorText(e)); void refreshList(); });
  if (current?.id === c.id) { current = null; messagesEl.replaceChildren(); }
  void refreshList();
  showToast(t.deleted(c.title), () => {
    pendingDeletes.undo(c.id);
    void api.undoDelete(c.id).then((back) => { if (!back) showError(t.undoTooLate); return refreshList(); });
  });
}

async function openConversation(c: Conversation, focusMessage?: number | null) {
  showView("chat");
  // The chat left behind parks its memory on disk; it comes back at once when reopened.
  if (current && current.id !== c.id && !streaming) void api.leave(current.id).catch(() => {});
  if (current?.id !== c.id) { cancelEdit(); if (!streaming) showModelLine(); }
  current = c;
  lastFirstVisible = null;
  const msgs = await api.messages(c.id);
  messagesEl.replaceChildren(...earlierButton(c, msgs), ...msgs.map(messageEl));
  markRecalledMessages();
  drawTimeline(timelineOf(c.id));
  clearGauge();
  void refreshGauge();
  refreshMessageTools();
  const target = focusMessage != null ? messagesEl.querySelector<HTMLElement>(`[data-id="${focusMessage}"]`) : null;
  if (target) {
    stickToBottom = false;
    target.scrollIntoView({ block: "center" });
    target.classList.add("flash");
    setTimeout(() => target.classList.remove("flash"), 2500);
  } else {
    stickToBottom = true;
    scrollToEnd(true);
  }
  await refreshList();
}

/** Messages come a page at a time, newest first: a chat of any length opens at once, and a
 *  button above the oldest one shown loads the page before it. */
function earlierButton(c: Conversation, page: Message[]): HTMLElement[] {
  if (page.length < MESSAGE_PAGE) return [];
  const wrap = el("div", { cls: "earlier" });
  wrap.append(button(t.earlierMessages, async () => {
    try {
      const older = await api.messages(c.id, page[0].id);
      if (current?.id !== c.id) return;
      const keep = messagesEl.scrollHeight - messagesEl.scrollTop;
      wrap.replaceWith(...earlierButton(c, older), ...older.map(messageEl));
      markRecalledMessages();
      messagesEl.scrollTop = messagesEl.scrollHeight - keep; // stay where the reader was
      showMemoryLine(lastFirstVisible);
    } catch (e) { showError(errorText(e)); }
  }, "earlier"));
  return [wrap];
}

/** A reply whose save failed: said on the message, with a way to save it again once the
 *  reply has ended (while it streams, the backend retries at every save). */
function markUnsaved(art: HTMLElement, message: string | null) {
  art.querySelector(".unsaved-note")?.remove();
  art.classList.toggle("unsaved", message !== null);
  if (message === null) return;
  const note = el("div", { cls: "unsaved-note", attrs: { role: "alert" } });
  note.append(el("span", { text: t.notSaved(message) }));
  if (!art.classList.contains("streaming")) {
    note.append(button(t.retrySave, async () => {
      try {
        await api.retrySave(Number(art.dataset.id));
        markUnsaved(art, null);
        statusEl.textContent = t.savedAfterAll;
      } catch (e) { markUnsaved(art, errorText(e)); }
    }, "retry-save"));
  }
  art.insertBefore(note, art.querySelector(".msg-tools"));
}

async function newChat() {
  showView("chat");
  if (current && !streaming) void api.leave(current.id).catch(() => {});
  cancelEdit();
  if (!streaming) showModelLine();
  current = await api.createConversation();
  messagesEl.replaceChildren();
  drawTimeline(undefined);
  clearGauge();
  await refreshList();
  input.focus();
}

// ---------- sending ----------

function setStreaming(on: boolean) {
  streaming = on;
  sendButton.hidden = on;
  stopButton.hidden = !on;
  if (!on) jump.hidden = true;
  refreshMessageTools();
}

type Start = (on: (e: ReplyEvent) => void) => Promise<Sent>;

/** Streams a reply: `start` calls the backend with our event handler. */
async function streamReply(start: Start, replaceFrom?: number) {
  const placeholder = messageEl({ id: -1, role: "assistant", content: "", status: "streaming" });
  const body = placeholder.querySelector(".body") as HTMLElement;
  let full = "";
  let frame = 0;
  let tokens = 0;
  let unsaved: string | null = null;
  const t0 = performance.now();
  // While tokens arrive only the reply's last block is rendered again each frame; the end
  // renders the whole reply once, as it will be shown when the chat is opened again.
  const live = new StreamingMarkdown(document, body, markdownOptions());
  const flush = (last = false) => {
    frame = 0;
    if (last) live.finish(full); else live.update(full);
    placeholder.dataset.raw = full;
    scrollToEnd();
  };
  setStreaming(true);
  stickToBottom = true;
  try {
    const sent = await start((e: ReplyEvent) => {
      switch (e.kind) {
        case "not_saved": unsaved = e.message; markUnsaved(placeholder, unsaved); break;
        case "saved": unsaved = null; markUnsaved(placeholder, null); break;
        case "memory":
          if (e.source === "snapshot") statusEl.textContent = t.memoryRestored;
          else if (e.source === "rebuilt") statusEl.textContent = t.memoryRebuilt;
          break;
        case "prefill": statusEl.textContent = t.reading(e.done, e.total); break;
        case "token":
          full += e.text;
          tokens++;
          if (tokens % 8 === 0) statusEl.textContent = t.writing(tokens, tokens / ((performance.now() - t0) / 1000));
          if (!frame) frame = requestAnimationFrame(() => flush());
          break;
        case "cache": showGauge(e.stats); showMemoryLine(e.first_visible_message); break;
        case "done":
          cancelAnimationFrame(frame);
          flush(true);
          placeholder.classList.remove("streaming");
          placeholder.classList.add(e.reason === "cancelled" ? "stopped" : "complete");
          if (e.reason === "cancelled") placeholder.insertBefore(el("span", { cls: "meta", text: t.status.stopped }), placeholder.querySelector(".msg-tools"));
          if (e.reason === "max_tokens") markCutOff(placeholder);
          statusEl.textContent = t.done(e.tokens, e.tokens_per_s);
          if (unsaved !== null) markUnsaved(placeholder, unsaved); // now with "Save again"
          setStreaming(false);
          showMemoryLine(lastFirstVisible);
          void refreshList();
          break;
        case "error":
          cancelAnimationFrame(frame);
          flush(true);
          placeholder.classList.remove("streaming");
          placeholder.classList.add("failed");
          if (unsaved !== null) markUnsaved(placeholder, unsaved);
          showError(t.replyFailed(e.message));
          setStreaming(false);
          break;
      }
    });
    if (replaceFrom !== undefined) {
      // Drop the messages the backend replaced (the old reply, or the edited message on).
      [...messagesEl.querySelectorAll<HTMLElement>(".message")].filter((a) => Number(a.dataset.id) >= replaceFrom).forEach((a) => a.remove());
      document.querySelectorAll(".memory-line").forEach((e) => e.remove());
    }
    if (!messagesEl.querySelector(`[data-id="${sent.user_message.id}"]`)) messagesEl.append(messageEl(sent.user_message));
    placeholder.dataset.id = String(sent.reply_id);
    messagesEl.append(placeholder);
    if (sent.recalled.length) markRecall(placeholder, sent.recalled);
    // Cache events can arrive before the reply has its place: draw the line again now.
    showMemoryLine(lastFirstVisible);
    scrollToEnd(true);
    return true;
  } catch (e) {
    setStreaming(false);
    showError(errorText(e)); // the typed text stays in the box: nothing is lost
    return false;
  }
}

/** A reply the length limit cut (#34): said on it, with a way to go on. Continue asks for
 *  the rest as a new turn of the chat (the model reads its own cut reply and goes on). */
function markCutOff(art: HTMLElement) {
  const note = el("div", { cls: "cut-note", attrs: { role: "note" } });
  note.append(el("span", { text: t.cutOff }), button(t.continueReply, () => {
    if (streaming || !current) return;
    note.remove();
    const conv = current;
    void streamReply((on) => api.send(conv.id, t.continuePrompt, on));
  }, "continue"));
  art.insertBefore(note, art.querySelector(".msg-tools"));
}

async function send() {
  const text = input.value;
  if (streaming) return;
  if (!text.trim()) { showError(t.typeFirst); return; }
  showError(null);
  if (!current) current = await api.createConversation();
  const conv = current;
  if (editing) {
    const arts = [...messagesEl.querySelectorAll<HTMLElement>(".message.user")];
    const from = Number(arts[arts.length - 1]?.dataset.id ?? Infinity);
    if (await streamReply((on) => api.editAndResend(conv.id, text, on), from)) { input.value = ""; cancelEdit(); }
    return;
  }
  if (await streamReply((on) => api.send(conv.id, text, on))) input.value = "";
}

async function regenerate() {
  if (!current || streaming) return;
  showError(null);
  const conv = current;
  const arts = [...messagesEl.querySelectorAll<HTMLElement>(".message")];
  const last = arts[arts.length - 1];
  const from = last?.classList.contains("assistant") ? Number(last.dataset.id) : Infinity;
  await streamReply((on) => api.regenerate(conv.id, on), from);
}

function startEdit(text: string) {
  editing = true;
  input.value = text;
  $("edit-note").textContent = t.editing;
  $("edit-note").hidden = false;
  sendButton.textContent = t.resend;
  input.focus();
}

function cancelEdit() {
  if (!editing) return;
  editing = false;
  input.value = "";
  $("edit-note").hidden = true;
  sendButton.textContent = t.send;
}

// ---------- search ----------

let searchTimer: ReturnType<typeof setTimeout> | undefined;
async function runSearch() {
  const q = searchBox.value.trim();
  results.hidden = !q;
  list.hidden = !!q;
  if (!q) return;
  try {
    const hits = await api.search(q);
    if (searchBox.value.trim() !== q) return; // typed on meanwhile
    // Word matches first; those found by meaning under their own heading.
    const items: HTMLElement[] = [];
    let meaningHeading = false;
    for (const h of hits) {
      if (h.by_meaning && !meaningHeading) {
        meaningHeading = true;
        items.push(el("li", { cls: "hits-heading", text: t.byMeaning }));
      }
      items.push(hitItem(h));
    }
    results.replaceChildren(...(items.length ? items : [el("li", { cls: "empty", text: t.noResults })]));
  } catch (e) { showError(errorText(e)); }
}

function hitItem(h: SearchHit): HTMLElement {
  const b = el("button", { cls: "hit", attrs: { type: "button" } });
  b.append(el("strong", { text: h.title }));
  const snip = el("span", { cls: "snippet" });
  for (const p of snippetParts(h.snippet)) snip.append(p.hit ? el("mark", { text: p.text }) : document.createTextNode(p.text));
  b.append(snip);
  b.addEventListener("click", async () => {
    const convs = await api.listConversations();
    const c = convs.find((x) => x.id === h.conversation_id) ?? { ...(current as Conversation), id: h.conversation_id, title: h.title };
    await openConversation(c, h.message_id);
  });
  return el("li", { cls: h.by_meaning ? "by-meaning" : undefined }, b);
}

searchBox.placeholder = t.searchPlaceholder;
searchBox.addEventListener("input", () => { clearTimeout(searchTimer); searchTimer = setTimeout(() => void runSearch(), 200); });
searchBox.addEventListener("keydown", (e) => { if (e.key === "Escape") { searchBox.value = ""; void runSearch(); } });

// ---------- views ----------

export function showView(name: "chat" | "models" | "settings") {
  const leaving = document.querySelector<HTMLElement>("[data-view-panel]:not([hidden])")?.dataset.viewPanel;
  document.querySelectorAll<HTMLElement>("[data-view-panel]").forEach((p) => { p.hidden = p.dataset.viewPanel !== name; });
  document.querySelectorAll<HTMLElement>("#views button").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.view === name)));
  if (name === "models") void showModels();
  if (name === "settings") void showSettings();
  else if (settingsUnsaved() && leaving === "settings") showToast(t.settingsLeftUnsaved);
}
document.querySelectorAll<HTMLElement>("#views button").forEach((b) => b.addEventListener("click", () => showView(b.dataset.view as "chat")));

// ---------- model status ----------

/** The status bar's line about the model in use; a reply's speed replaces it until another
 *  chat is opened (the speed belongs to the chat whose reply it was). */
let modelLine = "";
function showModelLine() { if (modelLine) statusEl.textContent = modelLine; }

export async function pollModel() {
  const s = await api.status();
  if (s.model.state === "ready") {
    modelLine = `${s.model.info.name} · ${s.model.info.device}`;
    // A GPU build running on the CPU says why, once, in the status bar's help.
    statusEl.title = s.model.info.device_note ?? "";
    if (s.model.info.device_note) modelLine += ` · ${t.noGpu}`;
    statusEl.textContent = modelLine;
    showError(null);
  } else if (s.model.state === "failed") {
    statusEl.textContent = t.noModel;
    showError(errorText(s.model.error));
  } else {
    statusEl.textContent = t.loadingModel;
    setTimeout(() => void pollModel(), 300);
  }
}

// ---------- wiring ----------

$("composer").addEventListener("submit", (e) => { e.preventDefault(); void send(); });
input.placeholder = t.placeholder;
input.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); void send(); }
  if (e.key === "Escape" && editing) { e.preventDefault(); cancelEdit(); }
});
stopButton.addEventListener("click", () => { if (current) void api.stop(current.id); });
$("new-chat").addEventListener("click", () => void newChat());
document.addEventListener("keydown", (e) => {
  const mod = e.ctrlKey || e.metaKey;
  if (e.key === "Escape" && streaming && current) void api.stop(current.id);
  else if (mod && e.key.toLowerCase() === "n") { e.preventDefault(); void newChat(); }
  else if (mod && e.key.toLowerCase() === "k") { e.preventDefault(); searchBox.focus(); searchBox.select(); }
});

$("export-chat").addEventListener("click", async () => {
  if (!current) { showError(t.openChatToExport); return; }
  try { showToast(t.savedTo(await api.exportConversations([current.id], "markdown"))); } catch (e) { showError(errorText(e)); }
});
$("export-all").addEventListener("click", async () => {
  try { showToast(t.savedTo(await api.exportConversations(null, "json"))); } catch (e) { showError(errorText(e)); }
});
// In the window the system's file picker gives a path and the backend reads the file (a big
// export never crosses the IPC as one string); in a browser the file input uploads its text.
$("import-label").addEventListener("click", async (ev) => {
  if (!inWindow()) return;
  ev.preventDefault();
  try {
    const path = await pickFile(t.exportFiles, ["json"]);
    if (!path) return;
    const r = await api.importConversationsFile(path);
    showToast(t.imported(r.conversations, r.messages));
    await refreshList();
  } catch (e) { showError(errorText(e)); }
});
// Links in replies open in the system's browser, never inside the app's window.
$("messages").addEventListener("click", (ev) => {
  const a = (ev.target as Element).closest?.("a[href]");
  if (!a) return;
  ev.preventDefault();
  openExternal(a.getAttribute("href")!).catch((e) => showError(errorText(e)));
});
$<HTMLInputElement>("import-file").addEventListener("change", async (ev) => {
  const f = (ev.target as HTMLInputElement).files?.[0];
  if (!f) return;
  try {
    const r = await api.importConversations(await f.text());
    showToast(t.imported(r.conversations, r.messages));
    await refreshList();
  } catch (e) { showError(errorText(e)); }
  (ev.target as HTMLInputElement).value = "";
});
// Pending deletes need nothing at close: the backend carries them out before it exits.

async function boot() {
  applyStrings();
  $("gauge-help").textContent = t.gaugeTitle;
  $("timeline").setAttribute("title", t.timelineTitle);
  statusEl.textContent = t.starting;
  initModels({ onModelSwitch: () => void pollModel() });
  initSettings();
  // A store that can't be read must not freeze the window: defaults, and the error shown.
  const settings = await api.settings().catch((e) => { showError(errorText(e)); return null; });
  applyTheme(settings?.theme ?? "system");
  if (settings && !settings.welcomed) {
    const w = $("welcome");
    w.hidden = false;
    $("welcome-start").focus();
    const done = async () => {
      w.hidden = true;
      await api.saveSettings({ ...(await api.settings()), welcomed: true }).catch(() => {});
    };
    $("welcome-start").addEventListener("click", async () => { await done(); input.focus(); }, { once: true });
    // No model yet (an install without the bundled one, or it was deleted): the welcome
    // offers the model recommended for this computer, never a script to run.
    void recommendedDownload().then((offer) => {
      if (!offer || w.hidden) return;
      $("welcome-offer").textContent = t.welcomeOffer(offer.title, offer.size);
      $("welcome-offer").hidden = false;
      const dl = $<HTMLButtonElement>("welcome-download");
      dl.hidden = false;
      dl.focus();
      dl.addEventListener("click", async () => { await done(); showView("models"); await offer.start(); }, { once: true });
    }).catch(() => {});
  }
  void pollModel();
  await refreshList().catch((e) => showError(errorText(e)));
  document.body.dataset.booted = "1";
}
void boot();
