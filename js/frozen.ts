// A dashboard drawn from a run's saved final state, with no kernel behind it: once a run ends,
// the dashboard's display becomes HTML that carries this script, the stylesheet and that state,
// so a saved notebook shows it again wherever an output's scripts run (JupyterLab and Notebook 7
// for a trusted notebook, VS Code, nbconvert's HTML, offline). Hosts that strip scripts show the
// static summary the HTML holds beside it. Built as an IIFE: `ontheflyFrozen(el, payload)`.

import { mountDashboard } from "./dashboard";
import type { DashboardModel } from "./model/host";
import { type BufferPath, putBuffers } from "./transport/transport";

export interface FrozenPayload {
  /** Trait values, binary ones left out (see `buffers`). */
  state: Record<string, unknown>;
  /** Each binary value, base64, and where it goes in `state`. */
  buffers: Array<{ path: BufferPath; data: string }>;
  /** When the state was saved, in seconds since the epoch. */
  saved: number;
}

function view(base64: string): DataView {
  const text = atob(base64);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return new DataView(bytes.buffer);
}

/** Mounts the frozen dashboard into `el`; returns its cleanup. */
export function mountFrozen(el: HTMLElement, payload: FrozenPayload): () => void {
  const state = { ...payload.state };
  putBuffers(state, payload.buffers.map((b) => ({ path: b.path, offset: 0, length: 0 })), payload.buffers.map((b) => view(b.data)));
  const model: DashboardModel = { get: (key) => state[key], on: () => undefined, off: () => undefined, send: () => undefined };
  return mountDashboard(el, model, { savedAt: payload.saved * 1000 });
}

(globalThis as { ontheflyFrozen?: typeof mountFrozen }).ontheflyFrozen = mountFrozen;
