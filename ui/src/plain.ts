// What an error says in the window: the sentence without the developer's details (file paths,
// web addresses, "os error" numbers) and without advice said twice. The whole text stays in the
// logs and in Copy diagnostics.

/** `message` as the window shows it; `hint`, the way forward, added unless already said. */
export function plainError(message: string, hint?: string): string {
  let m = message
    // "error sending request for url (https://huggingface.co/api/...)"; other addresses by
    // their host alone.
    .replace(/error sending request for url \([^)]*\)/gi, "the connection failed")
    .replace(/\(?\bhttps?:\/\/([^\s/)]+)[^\s)]*\)?/gi, (_all, host: string) => host)
    // "(os error 2)" and the like.
    .replace(/\s*\(os error \d+\)/gi, "")
    // An absolute path (or a home-relative one): its last part, the name a person knows.
    .replace(/(^|[\s"'(])(?:~|[A-Za-z]:)?[\\/](?:[^\s"'():,;\\/]+[\\/])+([^\s"'():,;\\/]+)/g, (_all, pre: string, name: string) => `${pre}${name}`)
    .replace(/\s{2,}/g, " ")
    .trim();
  m = m.charAt(0).toUpperCase() + m.slice(1);
  m = m.replace(/[\s:,;]+$/, "");
  if (!m) m = "Something went wrong";
  if (!hint) return /[.!?]$/.test(m) ? m : `${m}.`;
  const said = m.toLowerCase().includes(hint.toLowerCase().replace(/\.$/, ""));
  const sentence = /[.!?]$/.test(m) ? m : `${m}.`;
  return said ? sentence : `${sentence} ${hint}`;
}
