// The extension-host side of the renderer relay: opens WebSockets to the kernel's bridge on
// behalf of renderers and forwards frames both ways. Pure: it takes a messaging object
// shaped like `vscode.NotebookRendererMessaging` and a socket factory, so it runs (and is
// tested) without VS Code.

import { type SocketLike, redactUrl } from "../../js/transport/transport";
import { RELAY_TAG, type ToRenderer, fromBase64, isRelayMessage, toBase64 } from "./relay-protocol";

export interface DisposableLike {
  dispose(): unknown;
}

/** The part of `vscode.NotebookRendererMessaging` the relay uses; `E` is the editor type. */
export interface MessagingLike<E> {
  onDidReceiveMessage(listener: (e: { readonly editor: E; readonly message: unknown }) => unknown): DisposableLike;
  postMessage(message: unknown, editor?: E): PromiseLike<boolean> | boolean | void;
}

export type SocketFactory = (url: string) => SocketLike;

export interface RelayOptions {
  /** Whether the relay may open `url`; a string is the reason it may not. Default: `loopbackOnly`. */
  allowUrl?: (url: string) => true | string;
  /** At most this many sockets per editor (default 32): older ones are closed first. */
  maxPerEditor?: number;
}

const LOOPBACK = /^(localhost|127(?:\.\d{1,3}){3}|\[::1\])$/i;

/**
 * Only `ws:`/`wss:` URLs to this machine's loopback: the relay runs where the kernel runs,
 * and a notebook output must not make the extension host connect anywhere else.
 */
export function loopbackOnly(url: string): true | string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return "not a URL";
  }
  if (u.protocol !== "ws:" && u.protocol !== "wss:") return `scheme ${u.protocol} is not ws: or wss:`;
  if (!LOOPBACK.test(u.hostname)) return `host ${u.hostname} is not a loopback address`;
  return true;
}

interface Entry {
  socket: SocketLike;
  /** Frames the renderer sent before the socket opened. */
  pending: ArrayBuffer[];
}

const OPEN = 1;

export class Relay<E = unknown> implements DisposableLike {
  private readonly byEditor = new Map<E, Map<string, Entry>>();
  private readonly subscription: DisposableLike;
  private readonly allowUrl: (url: string) => true | string;
  private readonly maxPerEditor: number;
  private disposed = false;

  constructor(
    private readonly messaging: MessagingLike<E>,
    private readonly createSocket: SocketFactory,
    options: RelayOptions = {},
  ) {
    this.allowUrl = options.allowUrl ?? loopbackOnly;
    this.maxPerEditor = options.maxPerEditor ?? 32;
    this.subscription = messaging.onDidReceiveMessage(({ editor, message }) => this.receive(editor, message));
  }

  /** How many sockets are open or opening. */
  get size(): number {
    let n = 0;
    for (const m of this.byEditor.values()) n += m.size;
    return n;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.subscription.dispose();
    for (const [editor, sockets] of this.byEditor) {
      for (const id of [...sockets.keys()]) this.drop(editor, id, 1001, "the onthefly extension stopped");
    }
    this.byEditor.clear();
  }

  private post(editor: E, message: ToRenderer): void {
    try {
      const r = this.messaging.postMessage(message, editor);
      if (r && typeof (r as PromiseLike<boolean>).then === "function") {
        (r as PromiseLike<boolean>).then(undefined, (err: unknown) => console.warn("[onthefly relay] postMessage failed:", err));
      }
    } catch (err) {
      console.warn("[onthefly relay] postMessage failed:", err);
    }
  }

  /** Forgets a socket and closes it; the renderer hears nothing more about it. */
  private drop(editor: E, id: string, code?: number, reason?: string): void {
    const sockets = this.byEditor.get(editor);
    const entry = sockets?.get(id);
    if (!sockets || !entry) return;
    sockets.delete(id);
    if (sockets.size === 0) this.byEditor.delete(editor);
    const s = entry.socket;
    s.onopen = s.onmessage = s.onerror = s.onclose = null;
    try {
      s.close(code, reason);
    } catch {
      try {
        s.close();
      } catch {
        /* already closed */
      }
    }
  }

  private receive(editor: E, message: unknown): void {
    if (this.disposed || !isRelayMessage(message)) return;
    const { id } = message;
    switch (message.op) {
      case "open":
        this.open(editor, id, typeof message.url === "string" ? message.url : "");
        break;
      case "send": {
        const entry = this.byEditor.get(editor)?.get(id);
        if (!entry) {
          this.post(editor, { tag: RELAY_TAG, op: "error", id, message: "no such relayed connection" });
          return;
        }
        let data: ArrayBuffer;
        try {
          data = fromBase64(typeof message.data === "string" ? message.data : "");
        } catch {
          this.post(editor, { tag: RELAY_TAG, op: "error", id, message: "a relayed frame was not base64" });
          return;
        }
        if (entry.socket.readyState === OPEN) entry.socket.send(data);
        else entry.pending.push(data);
        break;
      }
      case "close":
        this.drop(
          editor,
          id,
          typeof message.code === "number" ? message.code : 1000,
          typeof message.reason === "string" ? message.reason : "",
        );
        break;
      default:
        break;
    }
  }

  private open(editor: E, id: string, url: string): void {
    this.drop(editor, id, 1000, "replaced"); // the same id again: a re-render
    const allowed = this.allowUrl(url);
    if (allowed !== true) {
      this.post(editor, { tag: RELAY_TAG, op: "error", id, message: `the relay refused ${redactUrl(url)}: ${allowed}` });
      this.post(editor, { tag: RELAY_TAG, op: "close", id, code: 1008, reason: allowed });
      return;
    }
    let socket: SocketLike;
    try {
      socket = this.createSocket(url);
    } catch (err) {
      const reason = (err as Error)?.message ?? String(err);
      this.post(editor, { tag: RELAY_TAG, op: "error", id, message: reason });
      this.post(editor, { tag: RELAY_TAG, op: "close", id, code: 1006, reason });
      return;
    }
    socket.binaryType = "arraybuffer";
    let sockets = this.byEditor.get(editor);
    if (!sockets) this.byEditor.set(editor, (sockets = new Map()));
    while (sockets.size >= this.maxPerEditor) this.drop(editor, sockets.keys().next().value as string, 1008, "too many dashboards");
    if (!this.byEditor.has(editor)) this.byEditor.set(editor, sockets);
    const entry: Entry = { socket, pending: [] };
    sockets.set(id, entry);
    const current = () => this.byEditor.get(editor)?.get(id) === entry;

    socket.onopen = () => {
      if (!current()) return;
      for (const frame of entry.pending.splice(0)) socket.send(frame);
      this.post(editor, { tag: RELAY_TAG, op: "open", id });
    };
    socket.onmessage = (ev: { data: unknown }) => {
      if (!current()) return;
      const data = ev.data;
      if (typeof data === "string") this.post(editor, { tag: RELAY_TAG, op: "message", id, text: data });
      else if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) this.post(editor, { tag: RELAY_TAG, op: "message", id, data: toBase64(data) });
    };
    socket.onerror = (ev: { message?: unknown; error?: unknown } | undefined) => {
      if (!current()) return;
      const detail = ev?.message ?? (ev?.error as Error | undefined)?.message;
      this.post(editor, { tag: RELAY_TAG, op: "error", id, message: typeof detail === "string" && detail ? detail : "the connection failed" });
    };
    socket.onclose = (ev: { code?: number; reason?: string } | undefined) => {
      if (!current()) return;
      const sockets = this.byEditor.get(editor)!;
      sockets.delete(id);
      if (sockets.size === 0) this.byEditor.delete(editor);
      this.post(editor, { tag: RELAY_TAG, op: "close", id, code: ev?.code ?? 1006, reason: ev?.reason ?? "" });
    };
  }
}
