// The anywidget host's path for messages to Python: a command comm the front end opens itself
// (target and key from the widget's `channel` trait). JupyterLab and Notebook 7 send a comm the
// browser opened to a kernel subshell, which ipykernel handles on its own thread, so a Pause is
// handled while a cell runs; a comm the kernel opened (the widget's own) waits for the cell.
// Until the comm is open, and on hosts without a reachable kernel (VS Code, marimo), messages go
// by the widget's own `model.send`.

import type { AnyModel } from "@anywidget/types";
import type { ChannelTrait } from "../model/contract";
import type { DashboardModel, Listener } from "../model/host";
import { isObject, str } from "../model/guards";

/** How long to wait for the kernel's subshell before opening the comm on the main shell anyway. */
export const SUBSHELL_WAIT_MS = 2000;

/** The parts of a JupyterLab comm (services' IComm) this uses. */
interface Comm {
  open(data?: unknown): unknown;
  send(data: unknown, metadata?: unknown, buffers?: ArrayBuffer[] | ArrayBufferView[]): unknown;
  close(): unknown;
  onMsg: ((msg: unknown) => void) | null;
  subshellStarted?: Promise<void>;
}

interface Kernel {
  createComm(target: string): Comm;
}

function channelOf(model: AnyModel): ChannelTrait | null {
  const value = model.get("channel");
  if (!isObject(value)) return null;
  const target = str(value.target);
  const key = str(value.key);
  return target && key ? { target, key } : null;
}

function kernelOf(model: AnyModel): Kernel | null {
  const kernel = (model.widget_manager as unknown as { kernel?: unknown } | undefined)?.kernel;
  return isObject(kernel) && typeof kernel.createComm === "function" ? (kernel as unknown as Kernel) : null;
}

/**
 * `model` for `mountDashboard`, its `send` going by a command comm once it is open. Returns the
 * model and a cleanup that closes the comm.
 */
export function withCommandComm(model: AnyModel): [DashboardModel, () => void] {
  const channel = channelOf(model);
  const kernel = kernelOf(model);
  let comm: Comm | null = null;
  let closed = false;
  if (channel && kernel) {
    let candidate: Comm | null = null;
    try {
      candidate = kernel.createComm(channel.target);
    } catch (err) {
      console.warn("[onthefly] no command comm; messages wait for the kernel's cells:", err);
    }
    if (candidate) {
      const opened = candidate;
      const started = opened.subshellStarted ?? Promise.resolve();
      const timeout = new Promise<void>((resolve) => setTimeout(resolve, SUBSHELL_WAIT_MS));
      void Promise.race([started, timeout]).then(() => {
        if (closed) return;
        opened.open({ key: channel.key });
        comm = opened;
      });
    }
  }
  const wrapped: DashboardModel = {
    get: (key: string) => model.get(key),
    on: (event: string, callback: Listener) => model.on(event, callback),
    off: (event?: string | null, callback?: Listener | null) => model.off(event ?? undefined, callback ?? undefined),
    send(content, callbacks, buffers) {
      if (comm) comm.send(content, {}, buffers);
      else model.send(content, callbacks, buffers);
    },
  };
  const cleanup = () => {
    closed = true;
    try {
      comm?.close();
    } catch {
      // the kernel is gone already
    }
    comm = null;
  };
  return [wrapped, cleanup];
}
