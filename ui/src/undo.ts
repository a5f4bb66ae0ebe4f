// Deletes that wait a few seconds for an undo before they happen.

export class PendingDeletes {
  private timers = new Map<number, { timer: ReturnType<typeof setTimeout>; commit: () => Promise<void> }>();
  constructor(private readonly delayMs = 6000) {}

  /** Schedules `commit` for `id`; returns false when one is already pending. */
  schedule(id: number, commit: () => Promise<void>): boolean {
    if (this.timers.has(id)) return false;
    const timer = setTimeout(() => { this.timers.delete(id); void commit(); }, this.delayMs);
    this.timers.set(id, { timer, commit });
    return true;
  }

  /** Cancels the pending delete of `id`; returns whether there was one. */
  undo(id: number): boolean {
    const p = this.timers.get(id);
    if (!p) return false;
    clearTimeout(p.timer);
    this.timers.delete(id);
    return true;
  }

  isPending(id: number): boolean { return this.timers.has(id); }

  /** Carries out every pending delete now (the window is closing). */
  async flush(): Promise<void> {
    const all = [...this.timers.values()];
    this.timers.clear();
    for (const p of all) { clearTimeout(p.timer); await p.commit(); }
  }
}
