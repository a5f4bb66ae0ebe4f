// Numbers for people: sizes, speeds, durations.

const UNITS: Record<string, string[]> = {
  en: ["bytes", "KB", "MB", "GB", "TB"],
  fr: ["octets", "Ko", "Mo", "Go", "To"],
};

/** A size as `lang` writes it: "4.4 GB" (English), "4,4 Go" (French). */
export function bytes(n: number | null | undefined, lang = "en"): string {
  if (n == null || !isFinite(n)) return "?";
  const units = UNITS[lang] ?? UNITS.en;
  let v = n, u = 0;
  while (v >= 1000 && u < units.length - 1) { v /= 1000; u++; }
  const figure = u === 0 ? v : v < 10 ? Math.round(v * 10) / 10 : Math.round(v);
  const digits = u > 0 && v < 10 ? 1 : 0;
  return `${figure.toLocaleString(lang, { minimumFractionDigits: digits, maximumFractionDigits: digits })} ${units[u]}`;
}

export function duration(s: number | null | undefined): string {
  if (s == null || !isFinite(s)) return "–";
  if (s < 60) return `${Math.max(1, Math.round(s))} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

export function count(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)}B`;
  if (n >= 1e6) return `${Math.round(n / 1e6)}M`;
  if (n >= 1e3) return `${Math.round(n / 1e3)}K`;
  return String(n);
}
