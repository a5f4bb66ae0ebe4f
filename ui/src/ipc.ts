// How the generated command functions (bindings/commands.ts) reach the backend. Two doors onto
// the same commands:
// - in the window, Tauri's IPC (withGlobalTauri): `invoke`, and a `Channel` for the events of
//   a reply or a download;
// - in a browser (`sinkchat serve`), HTTP: `POST /api/<command>` with the same JSON arguments.
//   A command given a channel answers with server-sent events: `result` (what invoke returns)
//   or `failure`, then one `message` per event.

interface TauriGlobal {
  core: {
    invoke<T>(cmd: string, args?: Record<string, unknown>): Promise<T>;
    Channel: new <T>() => { onmessage: (m: T) => void };
  };
}
const tauri = () => (window as unknown as { __TAURI__?: TauriGlobal }).__TAURI__;

/** A channel argument on the HTTP door: the callback, marked so invoke can find it. */
class HttpChannel<T> {
  constructor(readonly on: (m: T) => void) {}
}

/** Whether the page runs in SinkChat's window (Tauri) rather than a browser. */
export const inWindow = () => tauri() !== undefined;

/** The system's file picker (the dialog plugin): the chosen file's path, or null. */
export async function pickFile(name: string, extensions: string[]): Promise<string | null> {
  const t = tauri();
  if (!t) return null;
  const got = await t.core.invoke<string | string[] | null>("plugin:dialog|open", {
    options: { multiple: false, directory: false, filters: [{ name, extensions }] },
  });
  return Array.isArray(got) ? (got[0] ?? null) : got;
}

/** Opens a link in the system's browser (the opener plugin; http, https and mailto only). */
export async function openExternal(url: string): Promise<void> {
  const t = tauri();
  if (t) await t.core.invoke("plugin:opener|open_url", { url });
  else window.open(url, "_blank", "noopener,noreferrer");
}

export function channel<T>(on: (m: T) => void) {
  const t = tauri();
  if (!t) return new HttpChannel(on);
  const c = new t.core.Channel<T>();
  c.onmessage = on;
  return c;
}

export function invoke<T>(cmd: string, args: Record<string, unknown> = {}): Promise<T> {
  const t = tauri();
  if (t) return t.core.invoke<T>(cmd, args);
  return overHttp<T>(cmd, args);
}

const unreachable = (e: unknown) => ({ code: "offline", message: `SinkChat's server cannot be reached (${e instanceof Error ? e.message : String(e)})` });

async function overHttp<T>(cmd: string, args: Record<string, unknown>): Promise<T> {
  let on: ((m: unknown) => void) | null = null;
  const body: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(args)) {
    if (v instanceof HttpChannel) on = v.on;
    else body[k] = v;
  }
  let res: Response;
  try {
    res = await fetch(`/api/${cmd}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  } catch (e) {
    throw unreachable(e);
  }
  if (!on || !res.ok || !res.body) {
    const text = await res.text();
    const data = text ? JSON.parse(text) : null;
    if (!res.ok) throw data ?? { code: "http", message: `The server answered ${res.status}` };
    return data as T;
  }
  return streamed<T>(res.body, on);
}

/** Reads an event stream: resolves on `result`, rejects on `failure`, hands on the rest. */
function streamed<T>(body: ReadableStream<Uint8Array>, on: (m: unknown) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    let settled = false;
    const dispatch = (block: string) => {
      let event = "message";
      const data: string[] = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (!data.length) return; // a keep-alive comment
      const value = JSON.parse(data.join("\n"));
      if (event === "result") { settled = true; resolve(value as T); }
      else if (event === "failure") { settled = true; reject(value); }
      else on(value);
    };
    void (async () => {
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
          let i;
          while ((i = buf.indexOf("\n\n")) >= 0) {
            dispatch(buf.slice(0, i));
            buf = buf.slice(i + 2);
          }
        }
        if (!settled) reject({ code: "offline", message: "The server closed the answer early" });
      } catch (e) {
        if (!settled) reject(unreachable(e));
        else on({ kind: "error", code: "offline", message: unreachable(e).message });
      }
    })();
  });
}
