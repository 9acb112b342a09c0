// Whether the kernel (or the script's bridge) is still there: anything it sends counts, and it
// sends an `alive` message every second when nothing changed. Heard nothing for STALE_MS, or the
// socket closed: the connection is lost, and the dashboard keeps the last state on screen.

export const STALE_MS = 3000;

export interface Connection {
  live: boolean;
  /** When the last message came (ms since the epoch), or null before any. */
  lastSeen: number | null;
  /** A saved final state, drawn without a kernel (frozen.ts): `lastSeen` is when it was saved. */
  saved?: boolean;
}

export class Liveness {
  private lastSeen: number | null = null;
  private live = true;
  private closed = false;

  constructor(private readonly started: number) {}

  /** Something came from the kernel at `now`. */
  seen(now: number): void {
    this.lastSeen = now;
  }

  /** The transport closed for good (a page of a script that ended). */
  close(): void {
    this.closed = true;
  }

  /** The connection at `now`, or null when it has not changed since the last call. */
  check(now: number): Connection | null {
    const live = !this.closed && now - (this.lastSeen ?? this.started) < STALE_MS;
    if (live === this.live) return null;
    this.live = live;
    return { live, lastSeen: this.lastSeen };
  }
}
