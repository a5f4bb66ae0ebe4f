// The Settings screen: system prompt, sampling, the cache's shape (with the memory it takes),
// theme, data folder.

import { api, errorText, type Settings } from "./api.js";
import { $, showBanner, showToast, copyText } from "./dom.js";
import { bytes } from "./format.js";
import { t } from "./strings.js";
import { STYLES, styleOf, keepSizes, keepWords, type Style } from "./choices.js";

let loaded: Settings | null = null;
let kvBytesPerToken = 0; // in f32
let kvF16 = false; // whether a compact memory is stored in f16 on this device
let slidingBytes = 0; // in f32: sliding layers' memory, whatever the window

const num = (id: string) => Number($<HTMLInputElement>(id).value);

function showStyle() {
  const st = styleOf({ temperature: num("set-temperature"), top_p: num("set-top-p"), top_k: num("set-top-k"), repeat_penalty: num("set-repeat") });
  $("style-own").hidden = st !== "own";
  document.querySelectorAll<HTMLInputElement>("input[name=style]").forEach((r) => { r.checked = r.value === st; });
}

function pickStyle(name: Style) {
  const p = STYLES[name];
  $<HTMLInputElement>("set-temperature").value = String(p.temperature);
  $<HTMLInputElement>("set-top-p").value = String(p.top_p);
  $<HTMLInputElement>("set-top-k").value = String(p.top_k);
  $<HTMLInputElement>("set-repeat").value = String(p.repeat_penalty);
  showStyle();
}

/** The simple view's choice follows the Advanced window (and an unusual window gets its own
 *  entry, so it is shown as it is, not rounded to a size). */
function showKeep() {
  const total = num("set-sinks") + num("set-window");
  const sel = $<HTMLSelectElement>("set-keep");
  sel.replaceChildren(...keepSizes(total).map((n) => {
    const o = document.createElement("option");
    o.value = String(n);
    o.textContent = t.keepOption(keepWords(n, t.lang));
    return o;
  }));
  sel.value = String(total);
}

function pickKeep() {
  const total = Number($<HTMLSelectElement>("set-keep").value);
  $<HTMLInputElement>("set-window").value = String(Math.max(1, total - num("set-sinks")));
  showCacheMemory();
}

export function applyTheme(theme: string) {
  document.documentElement.dataset.theme = theme === "light" || theme === "dark" ? theme : "system";
}

function showCacheMemory() {
  const slots = num("set-sinks") + num("set-window");
  const half = kvF16 && $<HTMLSelectElement>("set-precision").value === "f16";
  const perToken = half ? kvBytesPerToken / 2 : kvBytesPerToken;
  const fixed = half ? slidingBytes / 2 : slidingBytes;
  $("cache-memory").textContent = kvBytesPerToken ? t.cacheMemory(bytes(slots * perToken + fixed, t.lang)) : "";
}

/** Whether the form holds changes not saved yet: they are kept when the screen is left and
 *  shown again as they were (#34: they used to be dropped silently). */
let dirty = false;
function setDirty(on: boolean) {
  dirty = on;
  $("settings-unsaved").hidden = !on;
}
export function settingsUnsaved(): boolean { return dirty; }

export function initSettings() {
  $("settings-form").addEventListener("submit", (e) => { e.preventDefault(); void save(); });
  for (const ev of ["input", "change"]) {
    $("settings-form").addEventListener(ev, (e) => {
      if ((e.target as HTMLElement).id !== "set-api-key") setDirty(true);
    });
  }
  for (const id of ["set-sinks", "set-window", "set-precision"]) $(id).addEventListener("input", showCacheMemory);
  for (const id of ["set-sinks", "set-window"]) $(id).addEventListener("input", showKeep);
  for (const id of ["set-temperature", "set-top-p", "set-top-k", "set-repeat"]) $(id).addEventListener("input", showStyle);
  $("set-keep").addEventListener("change", pickKeep);
  document.querySelectorAll<HTMLInputElement>("input[name=style]").forEach((r) => r.addEventListener("change", () => { if (r.value !== "own") pickStyle(r.value as Style); }));
  document.querySelectorAll<HTMLInputElement>("input[name=theme]").forEach((r) => r.addEventListener("change", () => applyTheme(r.value)));
  $("copy-diagnostics").addEventListener("click", async () => {
    try {
      const text = await api.diagnostics();
      await copyText(text);
      document.body.dataset.diagnostics = String(text.length); // for tests: what was copied
      showToast(t.diagnosticsCopied);
    } catch (e) { showBanner("settings-error", errorText(e)); }
  });
  $("delete-exports").addEventListener("click", async () => {
    try { showToast(t.exportsDeleted(await api.deleteExports())); } catch (e) { showBanner("settings-error", errorText(e)); }
  });
}

export async function showSettings() {
  if (dirty) {
    // Back with unsaved changes: the form keeps them; only the live figures are read again.
    await Promise.all([showServerState(), showSnapshotUsage(), showMeaningState()]);
    return;
  }
  showBanner("settings-error", null);
  const [s, status] = await Promise.all([api.settings(), api.status()]);
  loaded = s;
  kvBytesPerToken = status.model.state === "ready" ? status.model.info.kv_bytes_per_token : 0;
  kvF16 = status.model.state === "ready" && status.model.info.kv_f16;
  slidingBytes = status.model.state === "ready" ? status.model.info.sliding_kv_bytes : 0;
  $<HTMLTextAreaElement>("set-system-prompt").value = s.system_prompt;
  $<HTMLInputElement>("set-pin").checked = s.pin_system_prompt;
  $<HTMLInputElement>("set-recall").checked = s.recall;
  $<HTMLInputElement>("set-recall-share").value = String(s.recall_share);
  $<HTMLInputElement>("set-recall-meaning").checked = s.recall_meaning;
  $<HTMLInputElement>("set-temperature").value = String(s.sampling.temperature);
  $<HTMLInputElement>("set-top-p").value = String(s.sampling.top_p);
  $<HTMLInputElement>("set-top-k").value = String(s.sampling.top_k);
  $<HTMLInputElement>("set-repeat").value = String(s.sampling.repeat_penalty);
  $<HTMLInputElement>("set-seed").value = String(s.sampling.seed);
  $<HTMLInputElement>("set-max-tokens").value = String(s.sampling.max_tokens);
  $<HTMLInputElement>("set-sinks").value = String(s.cache.sinks);
  $<HTMLInputElement>("set-window").value = String(s.cache.window);
  $<HTMLSelectElement>("set-precision").value = s.cache.precision;
  $<HTMLInputElement>("set-snapshot-budget").value = String(s.snapshot_budget_mb);
  document.querySelectorAll<HTMLInputElement>("input[name=theme]").forEach((r) => { r.checked = r.value === s.theme; });
  $("data-folder").textContent = t.dataFolder(status.data_dir);
  $<HTMLInputElement>("set-api-server").checked = s.api_server;
  $<HTMLInputElement>("set-api-port").value = String(s.api_port);
  $<HTMLInputElement>("set-api-key").value = s.api_token;
  showCacheMemory();
  showStyle();
  showKeep();
  await Promise.all([showServerState(), showSnapshotUsage(), showMeaningState()]);
}

async function showMeaningState() {
  try {
    const m = await api.meaningState();
    $("meaning-state").textContent = m.state === "ready" ? t.meaningReady(m.done.toLocaleString(t.lang), (m.done + m.waiting).toLocaleString(t.lang), m.waiting)
      : m.state === "unavailable" ? t.meaningUnavailable : t.meaningIdle;
  } catch (e) { $("meaning-state").textContent = errorText(e); }
}

async function showSnapshotUsage() {
  try {
    const u = await api.snapshotUsage();
    $("snapshot-usage").textContent = t.snapshotUsage(bytes(u.bytes, t.lang), u.files);
  } catch (e) { $("snapshot-usage").textContent = errorText(e); }
}

/** With no window (`sinkchat serve`) the server is this page's own door: always on, whatever
 *  the setting (which stays as it was for the window). */
let serverAlwaysOn = false;

async function showServerState() {
  try {
    const st = await api.apiServerState();
    serverAlwaysOn = st.always_on;
    const box = $<HTMLInputElement>("set-api-server");
    box.disabled = st.always_on;
    $<HTMLInputElement>("set-api-port").disabled = st.always_on;
    if (st.always_on) box.checked = true;
    $("api-state").textContent = st.always_on ? t.apiAlwaysOn(st.url ?? "")
      : st.running ? t.apiRunning(st.url ?? "") : st.error ? t.apiFailed(st.error) : t.apiOff;
  } catch (e) { $("api-state").textContent = errorText(e); }
}

async function save() {
  if (!loaded) return;
  const theme = document.querySelector<HTMLInputElement>("input[name=theme]:checked")?.value ?? "system";
  const next: Settings = {
    ...loaded,
    system_prompt: $<HTMLTextAreaElement>("set-system-prompt").value,
    pin_system_prompt: $<HTMLInputElement>("set-pin").checked,
    recall: $<HTMLInputElement>("set-recall").checked,
    recall_share: num("set-recall-share"),
    recall_meaning: $<HTMLInputElement>("set-recall-meaning").checked,
    sampling: { ...loaded.sampling, temperature: num("set-temperature"), top_p: num("set-top-p"), top_k: num("set-top-k"),
      repeat_penalty: num("set-repeat"), seed: num("set-seed"), max_tokens: num("set-max-tokens") },
    cache: { ...loaded.cache, sinks: num("set-sinks"), window: num("set-window"),
      precision: $<HTMLSelectElement>("set-precision").value === "f32" ? "f32" : "f16" },
    snapshot_budget_mb: num("set-snapshot-budget"),
    theme,
    api_server: serverAlwaysOn ? loaded.api_server : $<HTMLInputElement>("set-api-server").checked,
    api_port: serverAlwaysOn ? loaded.api_port : num("set-api-port"),
  };
  try {
    loaded = await api.saveSettings(next);
    setDirty(false);
    applyTheme(loaded.theme);
    showBanner("settings-error", null);
    showToast(t.saved);
    await Promise.all([showServerState(), showSnapshotUsage(), showMeaningState()]);
  } catch (e) { showBanner("settings-error", errorText(e)); }
}
