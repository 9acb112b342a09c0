// A tiny typed message bus between the panels of one mounted dashboard, for the few
// interactions that cross panels. A panel that only needs another trait declares that
// trait instead.

import type { Connection } from "../model/liveness";

/** Every message a panel can send the others, with its payload. */
export interface PanelEvents {
  /** A cluster was picked (a row of the cluster table): select its points on the map. */
  selectCluster: number;
  /** The kernel went quiet (lost) or came back (live); see model/liveness.ts. */
  connection: Connection;
}

export interface Channel {
  emit<K extends keyof PanelEvents>(name: K, value: PanelEvents[K]): void;
  on<K extends keyof PanelEvents>(name: K, listener: (value: PanelEvents[K]) => void): void;
}

/** A channel whose listeners are dropped when `signal` aborts. */
export function createChannel(signal: AbortSignal): Channel {
  const listeners = new Map<keyof PanelEvents, Set<(value: never) => void>>();
  signal.addEventListener("abort", () => listeners.clear(), { once: true });
  return {
    emit(name, value) {
      for (const listener of listeners.get(name) ?? []) listener(value as never);
    },
    on(name, listener) {
      if (signal.aborted) return;
      let set = listeners.get(name);
      if (!set) listeners.set(name, (set = new Set()));
      set.add(listener);
    },
  };
}
