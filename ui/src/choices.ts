// Settings' simple choices (#34): answer styles as sampling values, and how much of a chat
// is kept in mind, in words. Pure, for the unit tests.

/** Answer styles and the sampling values each stands for (Advanced shows the values). Balanced
 *  is the engine's default, so a new install reads "Balanced". */
export const STYLES = {
  precise: { temperature: 0.2, top_p: 0.9, top_k: 40, repeat_penalty: 1.1 },
  balanced: { temperature: 0.7, top_p: 0.9, top_k: 40, repeat_penalty: 1.1 },
  creative: { temperature: 1.0, top_p: 0.95, top_k: 100, repeat_penalty: 1.1 },
} as const;
export type Style = keyof typeof STYLES;

/** The style the sampling fields match, or "own" when they match none (a setting changed under
 *  Advanced, or a settings file from before the styles): never rewritten unless a style is
 *  picked, so no value a user set is lost. */
export function styleOf(v: { temperature: number; top_p: number; top_k: number; repeat_penalty: number }): Style | "own" {
  const same = (a: number, b: number) => Math.abs(a - b) < 1e-6;
  for (const [name, p] of Object.entries(STYLES) as [Style, (typeof STYLES)[Style]][]) {
    if (same(v.temperature, p.temperature) && same(v.top_p, p.top_p) && v.top_k === p.top_k && same(v.repeat_penalty, p.repeat_penalty)) return name;
  }
  return "own";
}

/** How much a chat keeps in mind, as the simple view offers it: sinks + window of 1,024 to
 *  8,192 tokens, shown in words (about 3 words per 4 tokens). */
export const KEEP_SIZES = [1024, 2048, 4096, 8192];

/** About how many words `tokens` hold, rounded as people say it, written the way `lang`
 *  writes numbers: 2,048 -> "1,500" (English), "1 500" (French). */
export function keepWords(tokens: number, lang = "en-US"): string {
  const w = (tokens * 3) / 4;
  const r = w >= 1000 ? 100 : 10;
  return (Math.round(w / r) * r).toLocaleString(lang);
}

/** The sizes to offer, the current one among them even when it is none of the usual. */
export function keepSizes(total: number): number[] {
  return KEEP_SIZES.includes(total) ? [...KEEP_SIZES] : [...KEEP_SIZES, total].sort((a, b) => a - b);
}

