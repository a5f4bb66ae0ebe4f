// The Models screen: what is installed and in use, the catalog with downloads (progress, pause,
// resume, cancel), downloads left unfinished, any Hugging Face file, import, delete.

import { api, errorText, type DownloadEvent, type ModelsOverview } from "./api.js";
import type { Progress } from "./bindings/Progress.js";
import type { InstalledModel } from "./bindings/InstalledModel.js";
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
  $("import-path").addEventListener("input", () => { $<HTMLButtonElement>("import-button").disabled = true; $("import-verdict").textContent = ""; });
}

export async function showModels() {
  try {
    overview = await api.models();
    const s = await api.status();
    modelReady = s.model.state === "ready";
    $("models-active").textContent = s.model.state === "ready"
      ? t.activeModel(s.model.info.name, s.model.info.device)
      : s.model.state === "loading" ? t.loadingModel : t.noModel;
    render();
  } catch (e) { showError(errorText(e)); }
}

function keyOf(repo: string, file: string) { return `${repo.replace("/", "--")}--${file}`; }

function progressLine(p: Progress | undefined): string {
  if (!p) return t.connecting;
  switch (p.phase) {
    case "connecting": return t.connecting;
    case "retrying": return t.retrying(p.attempt, p.message ?? "");
    case "verifying": return t.verifying;
    default: return t.downloading(bytes(p.downloaded), bytes(p.total), bytes(p.bytes_per_s), duration(p.eta_s));
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
    box.append(progressBar(downloaded, total), el("span", { cls: "dl-text", text: t.pausedAt(bytes(downloaded), bytes(total)) }),
      button(t.resume, () => void startDownload(repo, file), "resume"),
      button(t.cancel, async () => { await api.cancelDownload(key); await showModels(); }, "cancel"));
  } else {
    const start = () => void startDownload(repo, file);
    const terms = license?.terms;
    box.append(button(t.download, terms ? () => askTerms(box, license.name, terms, start) : start, "download", `${t.download} ${file}`));
  }
  return box;
}

function summaryLine(m: InstalledModel): string {
  const s = m.summary;
  if (!s) return m.problem ?? "";
  return `${s.architecture} · ${s.quantization} · ${count(s.parameters)} · ${bytes(m.bytes)} · ${t.memory} ~${bytes(s.memory_bytes)} · ${t.template(s.chat_template, s.template_from_file)}`;
}

function render() {
  if (!overview) return;
  const o = overview;
  $("models-free").textContent = o.free_bytes != null ? t.freeSpace(bytes(o.free_bytes)) : "";
  $("installed-models").replaceChildren(...o.installed.map((m) => {
    const li = el("li", { cls: "card", attrs: { "data-file": m.file } });
    li.append(el("strong", { text: m.name || m.file }), el("span", { cls: "file", text: m.file }), el("span", { cls: "sub", text: summaryLine(m) }));
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
  $("catalog").replaceChildren(
    ...o.catalog.map((c) => {
      const key = keyOf(c.repo, c.file);
      const li = el("li", { cls: "card", attrs: { "data-key": key } });
      li.append(el("strong", { text: c.title }), el("span", { cls: "sub", text: c.description }),
        el("span", { cls: "facts", text: `${t.size} ${bytes(c.size_bytes)} · ${t.memory} ${bytes(c.memory_bytes)} · ${c.quantization} · ${t.catalogTemplate(c.chat_template)} · ${t.license}: ${c.license}` }));
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
  box.replaceChildren(el("span", { text: t.confirmDelete(bytes(m.bytes)) }),
    button(t.confirm, async () => {
      try {
        const freed = await api.deleteModel(m.file);
        showToast(t.freed(m.file, bytes(freed)));
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
