// Messages between the notebook renderer (in the webview) and the extension host, for
// when the webview cannot reach the kernel's WebSocket bridge itself (Remote-SSH, WSL,
// Codespaces: the bridge listens on the remote machine's loopback). The extension host
// opens the socket and relays each binary frame, base64-encoded, since renderer
// messaging carries JSON only.

export const RELAY_TAG = "onthefly-relay";

/** Renderer to extension. */
export type ToExtension =
  | { tag: typeof RELAY_TAG; op: "open"; id: string; url: string }
  | { tag: typeof RELAY_TAG; op: "send"; id: string; data: string }
  | { tag: typeof RELAY_TAG; op: "close"; id: string; code?: number; reason?: string };

/** Extension to renderer. */
export type ToRenderer =
  | { tag: typeof RELAY_TAG; op: "open"; id: string }
  | { tag: typeof RELAY_TAG; op: "message"; id: string; data?: string; text?: string }
  | { tag: typeof RELAY_TAG; op: "error"; id: string; message: string }
  | { tag: typeof RELAY_TAG; op: "close"; id: string; code: number; reason: string };

export function isRelayMessage(m: unknown): m is { tag: typeof RELAY_TAG; op: string; id: string } & Record<string, unknown> {
  return typeof m === "object" && m !== null && (m as { tag?: unknown }).tag === RELAY_TAG
    && typeof (m as { op?: unknown }).op === "string" && typeof (m as { id?: unknown }).id === "string";
}

const CHUNK = 0x8000;

interface NodeBuffer {
  from(data: ArrayBufferLike | string, offsetOrEncoding?: number | string, length?: number): { toString(enc: string): string; buffer: ArrayBufferLike; byteOffset: number; byteLength: number };
}
/** Node's Buffer in the extension host (much faster than btoa there); undefined in webviews. */
const NodeBuf = (globalThis as { Buffer?: NodeBuffer }).Buffer;

/** Base64 of the bytes (works in webviews and in Node). */
export function toBase64(data: ArrayBuffer | ArrayBufferView): string {
  const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (NodeBuf) return NodeBuf.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
  let s = "";
  for (let i = 0; i < bytes.length; i += CHUNK) s += String.fromCharCode.apply(null, bytes.subarray(i, i + CHUNK) as unknown as number[]);
  return btoa(s);
}

/** The bytes of a base64 string, as an ArrayBuffer of exactly that length. Throws on bad input. */
export function fromBase64(text: string): ArrayBuffer {
  if (NodeBuf) {
    // Buffer.from ignores bad characters; hold it to atob's rules
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 === 1) throw new SyntaxError("not base64");
    const b = NodeBuf.from(text, "base64");
    return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
  }
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out.buffer;
}
