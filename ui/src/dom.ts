// Small DOM helpers shared by the screens.

import { t } from "./strings.js";
import { UNDO_WINDOW_MS } from "./bindings/constants.js";

export const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;

/** createElement with a class, text and children; text always goes through textContent. */
export function el<K extends keyof HTMLElementTagNameMap>(tag: K, opts: { cls?: string; text?: string; attrs?: Record<string, string> } = {}, ...children: (Node | string)[]): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (opts.cls) e.className = opts.cls;
  if (opts.text !== undefined) e.textContent = opts.text;
  for (const [k, v] of Object.entries(opts.attrs ?? {})) e.setAttribute(k, v);
  e.append(...children);
  return e;
}

export function button(text: string, onClick: () => void, cls = "", label?: string): HTMLButtonElement {
  const b = el("button", { cls, text, attrs: { type: "button" } });
  if (label) b.setAttribute("aria-label", label);
  b.addEventListener("click", onClick);
  return b;
}

/** Fills every `[data-t]` element with its sentence from strings.ts. */
export function applyStrings(root: ParentNode = document) {
  const table = t as unknown as Record<string, unknown>;
  root.querySelectorAll<HTMLElement>("[data-t]").forEach((e) => {
    const v = table[e.dataset.t!];
    if (typeof v === "string") e.textContent = v;
  });
  for (const [attr, name] of [["tLabel", "aria-label"], ["tTitle", "title"]] as const) {
    root.querySelectorAll<HTMLElement>(`[data-t-${attr === "tLabel" ? "label" : "title"}]`).forEach((e) => {
      const v = table[e.dataset[attr]!];
      if (typeof v === "string") e.setAttribute(name, v);
    });
  }
  if (root === document) document.documentElement.lang = t.lang;
}

/** Shows `msg` in the banner `id` (hides it for `null`), with a button that closes it. */
export function showBanner(id: string, msg: string | null) {
  const b = $(id);
  b.hidden = !msg;
  if (!msg) { b.replaceChildren(); return; }
  const close = el("button", { cls: "banner-close", text: "×", attrs: { type: "button", "aria-label": t.close, title: t.close } });
  close.addEventListener("click", () => { b.hidden = true; b.replaceChildren(); });
  b.replaceChildren(el("span", { cls: "banner-text", text: msg }), close);
}

let toastTimer: ReturnType<typeof setTimeout> | undefined;
export function showToast(text: string, undo?: () => void) {
  const toast = $("toast");
  $("toast-text").textContent = text;
  const b = $<HTMLButtonElement>("toast-undo");
  b.hidden = !undo;
  b.onclick = () => { undo?.(); toast.hidden = true; };
  toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { toast.hidden = true; }, UNDO_WINDOW_MS);
}

export async function copyText(text: string) {
  try { await navigator.clipboard.writeText(text); } catch {
    // Older webviews: a hidden textarea and execCommand.
    const ta = el("textarea");
    ta.value = text;
    document.body.append(ta);
    ta.select();
    document.execCommand("copy");
    ta.remove();
  }
}
