// WebSocket transport: a `DashboardModel` fed by the Python bridge (onthefly_nb/bridge.py)
// instead of an ipywidgets comm, for the standalone page and the VS Code renderer.
//
// Every frame, in both directions, is one binary WebSocket message:
//   [uint32 little-endian H][H bytes of UTF-8 JSON header][payload bytes]
// The header's `buffers` lists `{path?, offset, length}`: byte ranges of the payload that
// follows the header. Server to client, `path` says where each buffer goes in `state`
// (like ipywidgets buffer paths); client to server, buffers have no path and come in the
// order given to `send`.
//   server -> client  {type: "hello", protocol, session}           once, on connect
//                     {type: "state", state, buffers}              the first has every trait,
//                                                                  later ones the changed ones
//                     {type: "error", protocol, reason}            a message was refused
//   client -> server  {type: "message", content, buffers}

import type { DashboardModel, Listener } from "../model/host";

/** The protocol version this front end speaks (onthefly_nb/protocol.py PROTOCOL_VERSION). */
export const PROTOCOL_VERSION = 1;

export type BufferPath = Array<string | number>;

/** One entry of a header's `buffers`: a byte range of the payload, and where it goes. */
export interface BufferRef {
  path?: BufferPath;
  offset: number;
  length: number;
}

export interface FrameHeader {
  type: string;
  buffers?: BufferRef[];
  [key: string]: unknown;
}

export interface DecodedFrame {
  header: FrameHeader;
  /** One view per `header.buffers` entry, over the frame's own bytes (no copy, any alignment). */
  buffers: DataView[];
}

export type BufferLike = ArrayBuffer | ArrayBufferView;

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

function bytesOf(b: BufferLike): Uint8Array {
  if (b instanceof ArrayBuffer) return new Uint8Array(b);
  if (ArrayBuffer.isView(b)) return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  throw new TypeError("onthefly: a frame buffer must be an ArrayBuffer or an ArrayBufferView");
}

/**
 * Encodes one frame. The buffers are laid out one after the other in the payload, and
 * `header.buffers` is set to their `{offset, length}` (with `paths[i]` as `path`, when
 * given). Returns an ArrayBuffer of exactly the frame's bytes.
 */
export function encodeFrame(
  header: Record<string, unknown>,
  buffers: readonly BufferLike[] = [],
  paths?: ReadonlyArray<BufferPath | undefined>,
): ArrayBuffer {
  const parts = buffers.map(bytesOf);
  let offset = 0;
  const refs: BufferRef[] = parts.map((p, i) => {
    const ref: BufferRef = { offset, length: p.byteLength };
    const path = paths?.[i];
    if (path) ref.path = [...path];
    offset += p.byteLength;
    return ref;
  });
  const json = encoder.encode(JSON.stringify({ ...header, buffers: refs }));
  const out = new Uint8Array(4 + json.byteLength + offset);
  new DataView(out.buffer).setUint32(0, json.byteLength, true);
  out.set(json, 4);
  let at = 4 + json.byteLength;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out.buffer;
}

/** Thrown for a frame that does not follow the wire format. */
export class FrameError extends Error {
  override name = "FrameError";
}

const isIndex = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;

/** Decodes one frame; throws a `FrameError` when it is malformed. */
export function decodeFrame(data: ArrayBuffer | ArrayBufferView): DecodedFrame {
  const bytes = bytesOf(data);
  if (bytes.byteLength < 4) throw new FrameError(`frame of ${bytes.byteLength} bytes is shorter than its 4-byte header length`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const h = view.getUint32(0, true);
  if (h > bytes.byteLength - 4) throw new FrameError(`header length ${h} exceeds the frame (${bytes.byteLength} bytes)`);
  let header: unknown;
  try {
    header = JSON.parse(decoder.decode(bytes.subarray(4, 4 + h)));
  } catch (err) {
    throw new FrameError(`frame header is not UTF-8 JSON: ${(err as Error).message}`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) throw new FrameError("frame header is not a JSON object");
  const hdr = header as FrameHeader;
  if (typeof hdr.type !== "string") throw new FrameError("frame header has no string `type`");
  const start = 4 + h;
  const payload = bytes.byteLength - start;
  const refs = hdr.buffers ?? [];
  if (!Array.isArray(refs)) throw new FrameError("frame header `buffers` is not a list");
  const buffers = refs.map((ref, i) => {
    if (typeof ref !== "object" || ref === null || !isIndex(ref.offset) || !isIndex(ref.length)) {
      throw new FrameError(`buffer ${i} needs whole, non-negative offset and length`);
    }
    if (ref.offset + ref.length > payload) {
      throw new FrameError(`buffer ${i} (offset ${ref.offset}, length ${ref.length}) runs past the payload (${payload} bytes)`);
    }
    if (ref.path !== undefined && (!Array.isArray(ref.path) || !ref.path.every((k) => typeof k === "string" || isIndex(k)))) {
      throw new FrameError(`buffer ${i} has a path that is not a list of keys and indices`);
    }
    return new DataView(bytes.buffer, bytes.byteOffset + start + ref.offset, ref.length);
  });
  return { header: hdr, buffers };
}

const UNSAFE_KEYS = new Set(["__proto__", "constructor", "prototype"]);

/**
 * Puts each buffer at its path inside `state` (in place), creating missing containers
 * (a list when the next key is a number). Refs without a path are skipped.
 */
export function putBuffers(state: Record<string, unknown>, refs: readonly BufferRef[], buffers: readonly DataView[]): void {
  refs.forEach((ref, i) => {
    const path = ref.path;
    if (!path || path.length === 0) return;
    if (path.some((k) => typeof k === "string" && UNSAFE_KEYS.has(k))) throw new FrameError(`buffer ${i} has an unsafe path`);
    let obj = state as Record<string | number, unknown>;
    for (let j = 0; j < path.length - 1; j++) {
      const key = path[j]!;
      let next = obj[key];
      if (typeof next !== "object" || next === null) {
        next = typeof path[j + 1] === "number" ? [] : {};
        obj[key] = next;
      }
      obj = next as Record<string | number, unknown>;
    }
    obj[path[path.length - 1]!] = buffers[i];
  });
}

// ---------------------------------------------------------------------------
// The model

/** The part of the browser's WebSocket the transport uses (so fakes and relays can stand in). */
export interface SocketLike {
  binaryType: string;
  readonly readyState: number;
  send(data: ArrayBuffer): void;
  close(code?: number, reason?: string): void;
  // Handlers take `any` so that the DOM's WebSocket (and the `ws` package's) fit as they are:
  // onmessage gets `{data}`, onclose `{code, reason}`.
  /* eslint-disable @typescript-eslint/no-explicit-any */
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: any) => void) | null;
  onerror: ((ev: any) => void) | null;
  onclose: ((ev: any) => void) | null;
  /* eslint-enable @typescript-eslint/no-explicit-any */
}

export type SocketConstructor = new (url: string) => SocketLike;

const OPEN = 1;

export interface ConnectOptions {
  /** Rejects when no state frame has arrived this many milliseconds after the call (default 30 s; 0: never). */
  timeoutMs?: number;
}

/** What `connect` resolves to: a dashboard model over the socket. */
export interface TransportModel extends DashboardModel {
  /** The session (run name) the server announced in its hello, or "" if it sent none. */
  readonly session: string;
  /** True once the socket has closed; later `send`s are dropped. */
  readonly closed: boolean;
  /** Closes the socket. Listeners of "close" are told. */
  close(): void;
}

/** The URL with the token's value hidden, for error messages and logs. */
export function redactUrl(url: string): string {
  return url.replace(/([?&#]token=)[^&#]*/gi, "$1***");
}

function describeClose(ev: { code?: number; reason?: string } | undefined): string {
  if (!ev) return "closed";
  const reason = ev.reason ? `: ${ev.reason}` : "";
  return `closed with code ${ev.code ?? "?"}${reason}`;
}

class SocketModel implements TransportModel {
  session = "";
  closed = false;
  private state: Record<string, unknown> = {};
  private listeners = new Map<string, Set<Listener>>();

  constructor(private readonly socket: SocketLike) {}

  get(key: string): unknown {
    return this.state[key];
  }

  on(event: string, callback: Listener): void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(callback);
  }

  off(event?: string | null, callback?: Listener | null): void {
    const events = event ? [event] : [...this.listeners.keys()];
    for (const ev of events) {
      const set = this.listeners.get(ev);
      if (!set) continue;
      if (callback) set.delete(callback);
      else set.clear();
      if (set.size === 0) this.listeners.delete(ev);
    }
  }

  send(content: unknown, _callbacks?: unknown, buffers: ArrayBuffer[] | ArrayBufferView[] = []): void {
    if (this.closed || this.socket.readyState !== OPEN) {
      console.warn("[onthefly] the connection to the training process is closed; message dropped:", content);
      return;
    }
    this.socket.send(encodeFrame({ type: "message", content }, buffers));
  }

  close(): void {
    if (this.closed) return;
    this.socket.close(1000, "closed by the dashboard");
  }

  /** Applies a state frame; returns the keys it carried. */
  applyState(header: FrameHeader, buffers: DataView[]): string[] {
    const incoming = header.state;
    if (typeof incoming !== "object" || incoming === null || Array.isArray(incoming)) {
      throw new FrameError("state frame without a `state` object");
    }
    const next = incoming as Record<string, unknown>;
    putBuffers(next, header.buffers ?? [], buffers);
    const keys = Object.keys(next).filter((k) => !UNSAFE_KEYS.has(k));
    for (const k of keys) this.state[k] = next[k];
    return keys;
  }

  emit(event: string, ...args: unknown[]): void {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const cb of [...set]) {
      try {
        cb(...args);
      } catch (err) {
        console.error(`[onthefly] a "${event}" listener failed:`, err);
      }
    }
  }
}

/**
 * Connects to the bridge at `url` (`ws://host:port/ws?token=...`) and resolves, once the
 * first state frame has arrived, to a model for `mountDashboard`:
 * - `get(trait)` is the latest value (binary values are DataViews);
 * - `on("change:<trait>", cb)` fires as `cb(model, value)` for each state frame that carries
 *   the trait, then `on("change", cb)` once per frame as `cb(model, keys)`;
 * - `on("msg:custom", cb)` gets each other frame, `error` ones included, as `cb(header, buffers)`;
 * - `on("close", cb)` fires once as `cb({code, reason})` when the socket closes;
 * - `send(content, callbacks, buffers)` sends a `message` frame.
 * Rejects with an Error when the socket closes or fails before the first state frame.
 */
export function connect(
  url: string,
  WebSocketImpl: SocketConstructor = globalThis.WebSocket,
  options: ConnectOptions = {},
): Promise<TransportModel> {
  const where = redactUrl(url);
  return new Promise<TransportModel>((resolve, reject) => {
    if (typeof WebSocketImpl !== "function") {
      reject(new Error("onthefly: this environment has no WebSocket"));
      return;
    }
    let socket: SocketLike;
    try {
      socket = new WebSocketImpl(url);
    } catch (err) {
      reject(new Error(`onthefly: cannot open ${where}: ${(err as Error).message ?? err}`));
      return;
    }
    socket.binaryType = "arraybuffer";
    const model = new SocketModel(socket);
    let settled = false;
    let problem = ""; // the latest protocol problem or error reason, for the rejection
    let timer: ReturnType<typeof setTimeout> | undefined;

    const fail = (message: string) => {
      if (settled) return;
      settled = true;
      if (timer !== undefined) clearTimeout(timer);
      reject(new Error(`onthefly: ${message}${problem ? ` (${problem})` : ""}`));
      if (!model.closed) {
        try {
          socket.close(1000);
        } catch {
          /* already closing */
        }
      }
    };

    const timeoutMs = options.timeoutMs ?? 30_000;
    if (timeoutMs > 0) {
      timer = setTimeout(() => fail(`no dashboard state from ${where} within ${Math.round(timeoutMs / 1000)} s`), timeoutMs);
    }

    socket.onerror = (ev: { message?: unknown } | undefined) => {
      // browsers say nothing useful here (relays and Node may); the close event follows with the code
      const detail = typeof ev?.message === "string" && ev.message ? ev.message : "the connection failed";
      if (!settled) problem ||= detail;
    };

    socket.onclose = (ev: { code?: number; reason?: string } | undefined) => {
      const wasClosed = model.closed;
      model.closed = true;
      if (!settled) {
        fail(`connection to ${where} ${describeClose(ev)} before any dashboard state arrived`);
        return;
      }
      if (!wasClosed) model.emit("close", { code: ev?.code, reason: ev?.reason ?? "" });
    };

    socket.onmessage = (ev: { data: unknown }) => {
      const data = ev.data;
      if (!(data instanceof ArrayBuffer) && !ArrayBuffer.isView(data)) {
        problem = "the server sent a text frame; frames must be binary";
        console.error(`[onthefly] ${problem}`);
        return;
      }
      let frame: DecodedFrame;
      try {
        frame = decodeFrame(data);
      } catch (err) {
        problem = `bad frame: ${(err as Error).message}`;
        console.error(`[onthefly] ${problem}`);
        return;
      }
      const { header, buffers } = frame;
      if (header.type === "hello") {
        if (typeof header.protocol === "number" && header.protocol !== PROTOCOL_VERSION) {
          fail(`${where} speaks protocol ${header.protocol}, this dashboard speaks ${PROTOCOL_VERSION}: reinstall matching versions`);
          return;
        }
        model.session = typeof header.session === "string" ? header.session : "";
        return;
      }
      if (header.type === "state") {
        let keys: string[];
        try {
          keys = model.applyState(header, buffers);
        } catch (err) {
          problem = `bad state frame: ${(err as Error).message}`;
          console.error(`[onthefly] ${problem}`);
          return;
        }
        if (!settled) {
          settled = true;
          if (timer !== undefined) clearTimeout(timer);
          resolve(model);
          return; // nobody listens yet: the dashboard reads the first state with get()
        }
        for (const k of keys) model.emit(`change:${k}`, model, model.get(k));
        if (keys.length) model.emit("change", model, keys);
        return;
      }
      if (header.type === "error") {
        const reason = typeof header.reason === "string" ? header.reason : "refused";
        if (!settled) problem = `server error: ${reason}`;
        else console.warn(`[onthefly] the training process refused a message: ${reason}`);
      }
      model.emit("msg:custom", header, buffers);
    };
  });
}
