// The renderer side of the relay: a WebSocket look-alike whose frames travel through the
// extension host (renderer messaging), so `connect()` works unchanged over it.

import type { SocketConstructor, SocketLike } from "../../js/transport/transport";
import { RELAY_TAG, type ToExtension, fromBase64, isRelayMessage, toBase64 } from "./relay-protocol";

/** The part of the renderer context the relay needs. */
export interface RendererMessaging {
  postMessage?(message: unknown): void;
  onDidReceiveMessage?: (listener: (e: unknown) => unknown) => { dispose(): void };
}

const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

export class RelayClient {
  private readonly sockets = new Map<string, RelaySocket>();
  private readonly prefix = Math.random().toString(36).slice(2, 10);
  private counter = 0;
  private readonly subscription: { dispose(): void };
  /** A constructor for `connect(url, client.Socket)`. */
  readonly Socket: SocketConstructor;

  /** How long a relayed socket waits for the extension's first answer before it gives up. */
  readonly answerTimeoutMs: number;

  constructor(private readonly ctx: Required<RendererMessaging>, options: { answerTimeoutMs?: number } = {}) {
    this.answerTimeoutMs = options.answerTimeoutMs ?? 10_000;
    this.subscription = ctx.onDidReceiveMessage((m) => this.receive(m));
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const client = this;
    this.Socket = class extends RelaySocket {
      constructor(url: string) {
        super(client, url);
      }
    };
  }

  /** Whether the context can relay (it has renderer messaging). */
  static available(ctx: RendererMessaging): ctx is Required<RendererMessaging> {
    return typeof ctx.postMessage === "function" && typeof ctx.onDidReceiveMessage === "function";
  }

  register(socket: RelaySocket): string {
    const id = `${this.prefix}-${++this.counter}`;
    this.sockets.set(id, socket);
    return id;
  }

  forget(id: string): void {
    this.sockets.delete(id);
  }

  post(message: ToExtension): void {
    this.ctx.postMessage(message);
  }

  dispose(): void {
    for (const s of [...this.sockets.values()]) s.close(1001, "renderer disposed");
    this.subscription.dispose();
  }

  private receive(message: unknown): void {
    if (!isRelayMessage(message)) return;
    this.sockets.get(message.id)?.deliver(message);
  }
}

export class RelaySocket implements SocketLike {
  binaryType = "arraybuffer";
  readyState = CONNECTING;
  readonly id: string;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onerror: ((ev: { message: string }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string; wasClean: boolean }) => void) | null = null;

  private answerTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly client: RelayClient, readonly url: string) {
    this.id = client.register(this);
    client.post({ tag: RELAY_TAG, op: "open", id: this.id, url });
    if (client.answerTimeoutMs > 0) {
      this.answerTimer = setTimeout(() => {
        const reason = "the onthefly extension did not answer (is it installed and enabled?)";
        this.onerror?.({ message: reason });
        this.close(1006, reason);
      }, client.answerTimeoutMs);
    }
  }

  send(data: ArrayBuffer | ArrayBufferView): void {
    if (this.readyState !== OPEN) throw new Error("the relayed connection is not open");
    this.client.post({ tag: RELAY_TAG, op: "send", id: this.id, data: toBase64(data) });
  }

  close(code = 1000, reason = ""): void {
    if (this.readyState >= CLOSING) return;
    this.readyState = CLOSING;
    this.client.post({ tag: RELAY_TAG, op: "close", id: this.id, code, reason });
    // the extension forgets the socket at once; finish like a browser would, asynchronously
    queueMicrotask(() => this.finish(code, reason, true));
  }

  /** A message from the extension about this socket. */
  deliver(m: Record<string, unknown>): void {
    if (this.readyState === CLOSED) return;
    clearTimeout(this.answerTimer);
    switch (m.op) {
      case "open":
        if (this.readyState !== CONNECTING) return;
        this.readyState = OPEN;
        this.onopen?.({});
        break;
      case "message":
        if (this.readyState !== OPEN) return;
        if (typeof m.data === "string") {
          let data: ArrayBuffer;
          try {
            data = fromBase64(m.data);
          } catch {
            this.onerror?.({ message: "a relayed frame was not base64" });
            return;
          }
          this.onmessage?.({ data });
        } else if (typeof m.text === "string") {
          this.onmessage?.({ data: m.text });
        }
        break;
      case "error":
        this.onerror?.({ message: typeof m.message === "string" ? m.message : "the relayed connection failed" });
        break;
      case "close":
        this.finish(typeof m.code === "number" ? m.code : 1006, typeof m.reason === "string" ? m.reason : "", false);
        break;
      default:
        break;
    }
  }

  private finish(code: number, reason: string, wasClean: boolean): void {
    if (this.readyState === CLOSED) return;
    clearTimeout(this.answerTimer);
    this.readyState = CLOSED;
    this.client.forget(this.id);
    this.onclose?.({ code, reason, wasClean });
  }
}
