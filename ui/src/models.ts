// The Models screen: what is installed and in use, the catalog with downloads (progress, pause,
// resume, cancel), downloads left unfinished, any Hugging Face file, import, delete.

import { api, errorText, type DownloadEvent, type ModelsOverview } from "./api.js";
import type { Progress } from "./bindings/Progress.js";
import type { InstalledModel } from "./bindings/InstalledModel.js";
import type { Advice } from "./bindings/Advice.js";
import { $, el, button, showBanner, showToast } from "./dom.js";
import { bytes, count, duration } from "./format.js";
import { t } from "./strings.js";
import { inWindow, pickFile, openExternal } from "./ipc.js";

/** Live state of downloads started in this session, by key. */
const live = new Map<string, { progress?: Progress; repo: string; file: string }>();
let overview: ModelsOverview | null = null;
let modelReady = false;
let onModelSwitch: () => void = () => {};

const showError = (m: string | null) => showBanner("models-error", m);

export function initModels(opts: { onModelSwitch: () => void }) {
  onModelSwitch = opts.onModelSwitch;
  $("custom-form").addEventListener("submit", (e) => {
    e.preventDefault();
    void startDownload($<HTMLInputElement>("custom-repo").value, $<HTMLInputElement>("custom-file").value);
  });
  $("inspect-button").addEventListener("click", () => void inspect());
  // In the window, the system's file picker fills the path (typing one still works).
  $("browse-model").hidden = !inWindow();
  $("browse-model").addEventListener("click", async () => {
    try {
      const path = await pickFile(t.modelFiles, ["gguf"]);
      if (!path) return;
      $<HTMLInputElement>("import-path").value = path;
      await inspect();
    } catch (e) { showError(errorText(e)); }
  });
  $("import-form").addEventListener("submit", (e) => { e.preventDefault(); void importFile(); });
  $("server-check").addEventListener("click", () => void checkServer());
  $("server-form").addEventListener("submit", (e) => { e.preventDefault(); void checkServer(); });
  $("server-use-form").addEventListener("submit", (e) => { e.preventDefault(); void useServer(); });
  $("server-models").addEventListener("change", () => fillContext());
  for (const id of ["server-address", "server-key"]) $(id).addEventListener("input", () => { $("server-use-form").hidden = true; $("server-warning").hidden = true; });
  $("import-path").addEventListener("input", () => { $<HTMLButtonElement>("import-button").disabled = true; $("import-verdict").textContent = ""; });
}

/** The model recommended for this computer, when none is installed yet (the welcome offers
 *  it); `null` otherwise. */
export async function recommendedDownload(): Promise<{ title: string; size: string; start: () => Promise<void> } | null> {
  const o = await api.models();
  if (o.installed.length > 0 || o.server) return null;
  // A model given from outside the models folder (SINKCHAT_MODEL) runs without being
  // installed: no offer then. Loading ends in a moment either way.
  let s = await api.status();
  for (let i = 0; i < 40 && s.model.state === "loading"; i++) {
    await new Promise((r) => setTimeout(r, 250));
    s = await api.status();
  }
  if (s.model.state === "ready") return null;
  const best = o.advice.find((a) => a.fit === "best");
  const c = best && o.catalog.find((x) => x.id === best.key);
  if (!c) return null;
  return { title: c.title, size: bytes(c.size_bytes, t.lang), start: async () => { overview = o; await startDownload(c.repo, c.file); } };
}

export async function showModels() {
  try {
    overview = await api.models();
    const s = await api.status();
    modelReady = s.model.state === "ready";
    $("models-active").textContent = overview.server && s.model.state === "ready"
      ? t.serverUsing(overview.server.model, overview.server.address)
      : s.model.state === "ready"
        ? t.activeModel(s.model.info.name, s.model.info.device)
        : s.model.state === "loading" ? t.loadingModel : t.noModel;
    const address = $<HTMLInputElement>("server-address");
    if (overview.server && !address.value) address.value = overview.server.address;
    render();
    rejoinRunning(overview);
  } catch (e) { showError(errorText(e)); }
}

/** Downloads running in the service that this page does not follow (started before it was
 *  reloaded, or from another page): followed from here, with their progress, Pause and Cancel,
 *  instead of a Resume button that would only be told it is already downloading. */
function rejoinRunning(o: ModelsOverview) {
  for (const key of o.running) {
    if (live.has(key)) continue;
    const m = o.unfinished.find((u) => u.key === key)?.model ?? o.catalog.find((c) => keyOf(c.repo, c.file) === key);
    if (m) void startDownload(m.repo, m.file);
  }
}

function keyOf(repo: string, file: string) { return `${repo.replace("/", "--")}--${file}`; }

function progressLine(p: Progress | undefined): string {
  if (!p) return t.connecting;
  switch (p.phase) {
    case "connecting": return t.connecting;
    case "retrying": return t.retrying(p.attempt, p.message ?? "");
    case "verifying": return t.verifying;
    default: return t.downloading(bytes(p.downloaded, t.lang), bytes(p.total, t.lang), bytes(p.bytes_per_s, t.lang), duration(p.eta_s));
  }
}

function progressBar(done: number, total: number): HTMLElement {
  const bar = el("progress", { attrs: { max: String(Math.max(1, total)), value: String(done) } });
  return bar;
}

/** A licence with terms of its own (Gemma's, Llama's): shown, with a link, and agreed to before
 *  the download starts. */
function askTerms(box: HTMLElement, license: string, terms: string, go: () => void) {
  const link = el("a", { text: terms, attrs: { href: terms, rel: "noopener noreferrer" } });
  // In the system's browser, never inside the app's window.
  link.addEventListener("click", (e) => { e.preventDefault(); void openExternal(terms); });
  const ask = el("div", { cls: "terms", attrs: { role: "group", "aria-label": t.termsTitle(license) } });
  ask.append(el("span", { text: t.termsAsk(license) }), link,
    button(t.termsAccept, () => go(), "accept-terms"),
    button(t.cancel, () => { ask.remove(); }, "cancel-terms"));
  box.replaceChildren(ask);
}

function downloadControls(key: string, repo: string, file: string, downloaded = 0, total = 0, license?: { name: string; terms: string | null }): HTMLElement {
  const box = el("div", { cls: "download" });
  const l = live.get(key);
  if (l) {
    const p = l.progress;
    box.append(progressBar(p?.downloaded ?? 0, p?.total ?? 1), el("span", { cls: "dl-text", text: progressLine(p) }),
      button(t.pause, () => void api.pauseDownload(key), "pause"),
      button(t.cancel, () => void api.cancelDownload(key), "cancel"));
  } else if (downloaded > 0) {
    box.append(progressBar(downloaded, total), el("span", { cls: "dl-text", text: t.pausedAt(bytes(downloaded, t.lang), bytes(total, t.lang)) }),
      button(t.resume, () => void startDownload(repo, file), "resume"),
      button(t.cancel, async () => { await api.cancelDownload(key); await showModels(); }, "cancel"));
  } else {
    const start = () => void startDownload(repo, file);
    const terms = license?.terms;
    box.append(button(t.download, terms ? () => askTerms(box, license.name, terms, start) : start, "download", `${t.download} ${file}`));
  }
  return box;
}

/** What a person reads about an installed model: its size and the memory it needs; the
 *  engineer's facts (architecture, weight type, template) go under Details. */
function summaryLine(m: InstalledModel, a: Advice | undefined): string {
  const s = m.summary;
  if (!s) return m.problem ?? "";
  return [t.onDisk(bytes(m.bytes, t.lang)), t.needsMemory(bytes(s.memory_bytes, t.lang)), speedWords(a)].filter(Boolean).join(" · ");
}

function detailsOf(facts: string[]): HTMLElement {
  const d = el("details", { cls: "model-details" });
  d.append(el("summary", { text: t.details }), el("span", { cls: "facts", text: facts.filter(Boolean).join(" · ") }));
  return d;
}

/** The estimated speed in words a second (about 3 words per 4 tokens), when measured. */
function speedWords(a: Advice | undefined): string {
  if (!a || a.tokens_per_s == null) return a?.on_gpu ? t.onGpu : "";
  return t.wordsPerSecond(Math.max(1, Math.round(a.tokens_per_s * 0.75)));
}

function fitBadge(a: Advice | undefined): HTMLElement | null {
  if (!a) return null;
  return el("span", { cls: `fit fit-${a.fit}`, text: t.fit[a.fit] });
}

/** "This computer: 16 GB of memory · 120 GB free on this disk". */
function machineLine(o: ModelsOverview): string {
  const m = o.machine;
  const parts = [
    m.memory_bytes != null ? t.machineMemory(bytes(m.memory_bytes, t.lang)) : "",
    m.gpu_memory_bytes != null ? t.machineGpu(bytes(m.gpu_memory_bytes, t.lang)) : "",
    m.free_disk_bytes != null ? t.freeSpace(bytes(m.free_disk_bytes, t.lang)) : "",
  ].filter(Boolean);
  return parts.length ? t.thisComputer(parts.join(" · ")) : "";
}

function render() {
  if (!overview) return;
  const o = overview;
  $("models-free").textContent = machineLine(o);
  const advice = new Map(o.advice.map((a) => [a.key, a]));
  const adviceOfFile = (file: string) => advice.get(o.catalog.find((c) => c.file === file)?.id ?? file);
  $("installed-models").replaceChildren(...o.installed.map((m) => {
    const li = el("li", { cls: "card", attrs: { "data-file": m.file } });
    const a = adviceOfFile(m.file);
    const s = m.summary;
    li.append(el("strong", { text: m.name || m.file }), el("span", { cls: "sub", text: summaryLine(m, a) }));
    if (s) li.append(detailsOf([m.file, s.architecture, s.quantization, count(s.parameters), t.template(s.chat_template, s.template_from_file)]));
    const actions = el("div", { cls: "actions" });
    if (m.file === o.active && modelReady) actions.append(el("span", { cls: "badge", text: t.inUse }));
    else {
      if (m.summary) actions.append(button(t.use, () => void useModel(m.file), "use", `${t.use} ${m.file}`));
      actions.append(button(t.delete, () => confirmDelete(actions, m), "delete", `${t.delete} ${m.file}`));
    }
    li.append(actions);
    return li;
  }));
  const installed = new Set(o.installed.map((m) => m.file));
  const unfinished = o.unfinished.filter((u) => !live.has(u.key));
  $("unfinished-section").hidden = unfinished.length === 0;
  $("unfinished-models").replaceChildren(...unfinished.map((u) => {
    const li = el("li", { cls: "card", attrs: { "data-key": u.key } });
    li.append(el("strong", { text: u.model.file }), el("span", { cls: "sub", text: u.model.repo }), downloadControls(u.key, u.model.repo, u.model.file, u.downloaded, u.total));
    return li;
  }));
  const known = new Set(o.catalog.map((c) => keyOf(c.repo, c.file)));
  const extra = [...live.entries()].filter(([k]) => !known.has(k)).map(([k, v]) => ({ k, ...v }));
  // The one recommended for this computer first; the rest in the catalog's order.
  const ordered = [...o.catalog].sort((a, b) => Number(advice.get(b.id)?.fit === "best") - Number(advice.get(a.id)?.fit === "best"));
  $("catalog").replaceChildren(
    ...ordered.map((c) => {
      const key = keyOf(c.repo, c.file);
      const a = advice.get(c.id);
      const li = el("li", { cls: "card", attrs: { "data-key": key, "data-fit": a?.fit ?? "" } });
      const badge = fitBadge(a);
      li.append(el("strong", { text: c.title }));
      if (badge) li.append(badge);
      li.append(el("span", { cls: "sub", text: t.describe[c.id] ?? c.description }),
        el("span", { cls: "facts", text: [t.downloadSize(bytes(c.size_bytes, t.lang)), t.needsMemory(bytes(a?.memory_bytes ?? c.memory_bytes, t.lang)), speedWords(a)].filter(Boolean).join(" · ") }),
        detailsOf([c.file, c.quantization, t.catalogTemplate(c.chat_template), `${t.license}: ${c.license}`]));
      if (installed.has(c.file)) li.append(el("span", { cls: "badge", text: c.file === o.active ? t.inUse : t.installed }));
      else {
        const u = o.unfinished.find((x) => x.key === key);
        li.append(downloadControls(key, c.repo, c.file, u?.downloaded, u?.total, { name: c.license, terms: c.terms }));
      }
      return li;
    }),
    ...extra.map((x) => {
      const li = el("li", { cls: "card", attrs: { "data-key": x.k } });
      li.append(el("strong", { text: x.file }), el("span", { cls: "sub", text: x.repo }), downloadControls(x.k, x.repo, x.file));
      return li;
    }),
  );
}

function confirmDelete(box: HTMLElement, m: InstalledModel) {
  box.replaceChildren(el("span", { text: t.confirmDelete(bytes(m.bytes, t.lang)) }),
    button(t.confirm, async () => {
      try {
        const freed = await api.deleteModel(m.file);
        showToast(t.freed(m.file, bytes(freed, t.lang)));
      } catch (e) { showError(errorText(e)); }
      await showModels();
    }, "confirm-delete"),
    button(t.cancel, () => render(), "cancel-delete"));
}

async function startDownload(repo: string, file: string) {
  showError(null);
  const key = keyOf(repo.trim(), file.trim());
  live.set(key, { repo: repo.trim(), file: file.trim() });
  render();
  try {
    const k = await api.startDownload(repo, file, (e: DownloadEvent) => {
      const entry = live.get(key);
      if (e.kind === "progress") {
        if (entry) entry.progress = e.progress;
        const card = document.querySelector<HTMLElement>(`[data-key="${CSS.escape(key)}"]`);
        const bar = card?.querySelector("progress");
        const text = card?.querySelector(".dl-text");
        if (bar && text) { bar.max = Math.max(1, e.progress.total); bar.value = e.progress.downloaded; text.textContent = progressLine(e.progress); }
        else render();
        return;
      }
      live.delete(key);
      if (e.kind === "failed") showError(errorText(e.error));
      else if (e.outcome.outcome === "installed") {
        showToast(t.installedOk(e.outcome.model.file));
        // With no model running (first start without one, or a broken one), use it at once.
        const file = e.outcome.model.file;
        void api.status().then((s) => { if (s.model.state === "failed") void useModel(file); });
      }
      void showModels();
    });
    if (k !== key) { live.set(k, live.get(key)!); live.delete(key); }
  } catch (e) {
    live.delete(key);
    showError(errorText(e));
    render();
  }
}

async function useModel(file: string) {
  showError(null);
  try {
    await api.useModel(file);
    showToast(t.switching);
    onModelSwitch();
    await showModels();
  } catch (e) { showError(errorText(e)); }
}

async function inspect() {
  const path = $<HTMLInputElement>("import-path").value.trim();
  const verdict = $("import-verdict");
  verdict.className = "";
  try {
    const s = await api.inspectModel(path);
    verdict.textContent = `${t.canRun(s.architecture, s.quantization, count(s.parameters), s.trained_context)} ${t.template(s.chat_template, s.template_from_file)}.`;
    verdict.className = "ok";
    $<HTMLButtonElement>("import-button").disabled = false;
  } catch (e) {
    verdict.textContent = errorText(e);
    verdict.className = "bad";
    $<HTMLButtonElement>("import-button").disabled = true;
  }
}

async function importFile() {
  const path = $<HTMLInputElement>("import-path").value.trim();
  try {
    const m = await api.importModel(path);
    showToast(t.installedOk(m.file));
    $("import-verdict").textContent = "";
    $<HTMLButtonElement>("import-button").disabled = true;
    await showModels();
  } catch (e) { showError(errorText(e)); }
}

/** What the last Check found, by model id: the context the server says (null: it does not). */
let serverModels: { id: string; context: number | null }[] = [];

function fillContext() {
  const id = $<HTMLSelectElement>("server-models").value;
  const m = serverModels.find((x) => x.id === id);
  const ctx = $<HTMLInputElement>("server-context");
  ctx.value = m?.context != null ? String(m.context) : "";
  // What the server says is not the user's to change; where it says nothing, they enter it.
  ctx.readOnly = m?.context != null;
}

async function checkServer() {
  showError(null);
  const address = $<HTMLInputElement>("server-address").value.trim();
  const key = $<HTMLInputElement>("server-key").value;
  const warning = $("server-warning");
  warning.hidden = true;
  $("server-use-form").hidden = true;
  try {
    const c = await api.checkServer(address, key || null);
    serverModels = c.models;
    if (c.models.length === 0) { showError(t.serverNoModels); return; }
    $("server-models").replaceChildren(...c.models.map((m) => el("option", { text: m.id, attrs: { value: m.id } })));
    fillContext();
    if (c.warning) { warning.textContent = c.warning; warning.hidden = false; }
    $("server-use-form").hidden = false;
  } catch (e) { showError(errorText(e)); }
}

async function useServer() {
  showError(null);
  const address = $<HTMLInputElement>("server-address").value.trim();
  const key = $<HTMLInputElement>("server-key").value;
  const model = $<HTMLSelectElement>("server-models").value;
  const ctx = Number($<HTMLInputElement>("server-context").value);
  try {
    const c = await api.useServer(address, key || null, model, Number.isFinite(ctx) && ctx > 0 ? ctx : null);
    showToast(t.serverUsing(c.model, c.address));
    $<HTMLInputElement>("server-key").value = "";
    onModelSwitch();
    await showModels();
  } catch (e) { showError(errorText(e)); }
}
