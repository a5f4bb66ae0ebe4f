// The two pieces of Tauri's global API (withGlobalTauri) that the generated command functions
// in bindings/commands.ts call.

interface TauriGlobal {
  core: {
    invoke<T>(cmd: string, args?: Record<string, unknown>): Promise<T>;
    Channel: new <T>() => { onmessage: (m: T) => void };
  };
}
const tauri = () => (window as unknown as { __TAURI__: TauriGlobal }).__TAURI__;

export const invoke = <T>(cmd: string, args?: Record<string, unknown>) => tauri().core.invoke<T>(cmd, args);

export function channel<T>(on: (m: T) => void) {
  const c = new (tauri().core.Channel)<T>();
  c.onmessage = on;
  return c;
}
