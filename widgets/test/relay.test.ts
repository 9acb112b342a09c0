import { afterEach, describe, expect, it, vi } from "vitest";
import { WebSocket as NodeWebSocket, WebSocketServer } from "ws";
import { type SocketLike, connect, decodeFrame, encodeFrame } from "../../js/transport/transport";
import { readPayload, socketUrl } from "../src/payload";
import { Relay, loopbackOnly } from "../src/relay";
import { RelayClient } from "../src/relay-client";
import { RELAY_TAG, fromBase64, toBase64 } from "../src/relay-protocol";

type Listener = (e: { editor: string; message: unknown }) => unknown;

/** A fake `vscode.NotebookRendererMessaging`: the test plays the renderers. */
class FakeMessaging {
  listeners = new Set<Listener>();
  posted: Array<{ message: Record<string, unknown>; editor?: string }> = [];
  disposed = 0;

  onDidReceiveMessage(listener: Listener) {
    this.listeners.add(listener);
    return { dispose: () => { this.disposed++; this.listeners.delete(listener); } };
  }

  postMessage(message: unknown, editor?: string): Promise<boolean> {
    this.posted.push({ message: message as Record<string, unknown>, editor });
    return Promise.resolve(true);
  }

  fromRenderer(editor: string, message: Record<string, unknown>): void {
    for (const l of this.listeners) l({ editor, message: { tag: RELAY_TAG, ...message } });
  }

  ops(editor?: string): string[] {
    return this.posted.filter((p) => editor === undefined || p.editor === editor).map((p) => `${p.message.op}:${p.message.id}`);
  }
}

/** A fake WebSocket for the extension side: the test plays the server. */
class FakeSocket implements SocketLike {
  binaryType = "nodebuffer";
  readyState = 0;
  sent: ArrayBuffer[] = [];
  closed: Array<[number | undefined, string | undefined]> = [];
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  onclose: ((ev: { code?: number; reason?: string }) => void) | null = null;
  constructor(public url: string) {}
  send(data: ArrayBuffer): void {
    this.sent.push(data);
  }
  close(code?: number, reason?: string): void {
    this.closed.push([code, reason]);
    this.readyState = 3;
  }
  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }
  serverSend(data: unknown): void {
    this.onmessage?.({ data });
  }
  serverClose(code: number, reason = ""): void {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
}

const URL_ = "ws://127.0.0.1:8765/ws?token=t0k";

function setup(options = {}) {
  const messaging = new FakeMessaging();
  const sockets: FakeSocket[] = [];
  const relay = new Relay<string>(messaging, (url) => {
    const s = new FakeSocket(url);
    sockets.push(s);
    return s;
  }, options);
  return { messaging, sockets, relay };
}

afterEach(() => vi.restoreAllMocks());

describe("base64 frames", () => {
  const NodeBuffer = Buffer; // kept: one test hides the global
  const same = (a: ArrayBuffer, b: Uint8Array) => NodeBuffer.from(a).equals(NodeBuffer.from(b.buffer, b.byteOffset, b.byteLength));
  const bytes = new Uint8Array(300_001);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7) & 255;

  it("round-trip every byte value and large frames, with Node's Buffer", () => {
    expect(same(fromBase64(toBase64(bytes)), bytes)).toBe(true);
    expect(same(fromBase64(toBase64(bytes.subarray(3, 8))), bytes.subarray(3, 8))).toBe(true);
    expect(fromBase64(toBase64(new ArrayBuffer(0))).byteLength).toBe(0);
    expect(() => fromBase64("%%%")).toThrow();
  });

  it("round-trip without Buffer, as in a webview, to the same text", async () => {
    vi.stubGlobal("Buffer", undefined);
    vi.resetModules();
    try {
      const web = await import("../src/relay-protocol");
      const text = web.toBase64(bytes);
      expect(text).toBe(toBase64(bytes));
      expect(same(web.fromBase64(text), bytes)).toBe(true);
      expect(() => web.fromBase64("%%%")).toThrow();
    } finally {
      vi.unstubAllGlobals();
    }
  });
});

describe("Relay (extension side)", () => {
  it("opens a socket per renderer request and relays frames both ways", () => {
    const { messaging, sockets, relay } = setup();
    messaging.fromRenderer("ed1", { op: "open", id: "a", url: URL_ });
    expect(sockets).toHaveLength(1);
    expect(sockets[0]!.url).toBe(URL_);
    expect(sockets[0]!.binaryType).toBe("arraybuffer");
    expect(relay.size).toBe(1);

    // a frame sent before the socket opened waits for it
    const early = encodeFrame({ type: "message", content: { type: "command", name: "pause" } });
    messaging.fromRenderer("ed1", { op: "send", id: "a", data: toBase64(early) });
    expect(sockets[0]!.sent).toHaveLength(0);
    sockets[0]!.open();
    expect(sockets[0]!.sent).toHaveLength(1);
    expect(decodeFrame(sockets[0]!.sent[0]!).header.content).toEqual({ type: "command", name: "pause" });
    expect(messaging.posted.at(-1)).toEqual({ editor: "ed1", message: { tag: RELAY_TAG, op: "open", id: "a" } });

    const frame = encodeFrame({ type: "state", state: { run: { step: 3 } } }, [Uint8Array.from([1, 2, 3])], [["blob"]]);
    sockets[0]!.serverSend(frame);
    const posted = messaging.posted.at(-1)!;
    expect(posted.editor).toBe("ed1");
    expect(posted.message).toMatchObject({ tag: RELAY_TAG, op: "message", id: "a" });
    expect(new Uint8Array(fromBase64(posted.message.data as string))).toEqual(new Uint8Array(frame));
    // Node's Buffers (ws with the default binaryType) are relayed too
    sockets[0]!.serverSend(Buffer.from([9, 8]));
    expect(new Uint8Array(fromBase64(messaging.posted.at(-1)!.message.data as string))).toEqual(Uint8Array.from([9, 8]));

    const later = encodeFrame({ type: "message", content: { type: "command", name: "resume" } });
    messaging.fromRenderer("ed1", { op: "send", id: "a", data: toBase64(later) });
    expect(new Uint8Array(sockets[0]!.sent[1]!)).toEqual(new Uint8Array(later));
  });

  it("reports the server's close to the renderer and forgets the socket", () => {
    const { messaging, sockets, relay } = setup();
    messaging.fromRenderer("ed1", { op: "open", id: "a", url: URL_ });
    sockets[0]!.open();
    sockets[0]!.serverClose(1011, "session ended");
    expect(messaging.posted.at(-1)!.message).toEqual({ tag: RELAY_TAG, op: "close", id: "a", code: 1011, reason: "session ended" });
    expect(relay.size).toBe(0);
    messaging.fromRenderer("ed1", { op: "send", id: "a", data: "" });
    expect(messaging.posted.at(-1)!.message).toMatchObject({ op: "error", id: "a" });
  });

  it("closes the socket when the renderer does, silently", () => {
    const { messaging, sockets, relay } = setup();
    messaging.fromRenderer("ed1", { op: "open", id: "a", url: URL_ });
    sockets[0]!.open();
    const before = messaging.posted.length;
    messaging.fromRenderer("ed1", { op: "close", id: "a", code: 1000, reason: "bye" });
    expect(sockets[0]!.closed).toEqual([[1000, "bye"]]);
    expect(relay.size).toBe(0);
    sockets[0]!.serverSend(new ArrayBuffer(4)); // late frames are not forwarded
    expect(messaging.posted.length).toBe(before);
  });

  it("keeps editors apart: same ids, replies to the right editor", () => {
    const { messaging, sockets } = setup();
    messaging.fromRenderer("ed1", { op: "open", id: "x", url: URL_ });
    messaging.fromRenderer("ed2", { op: "open", id: "x", url: URL_ });
    expect(sockets).toHaveLength(2);
    sockets[1]!.open();
    expect(messaging.ops()).toEqual(["open:x"]);
    expect(messaging.posted[0]!.editor).toBe("ed2");
    messaging.fromRenderer("ed1", { op: "close", id: "x" });
    expect(sockets[0]!.closed).toHaveLength(1);
    expect(sockets[1]!.closed).toHaveLength(0);
  });

  it("re-opening an id replaces its socket", () => {
    const { messaging, sockets, relay } = setup();
    messaging.fromRenderer("ed1", { op: "open", id: "a", url: URL_ });
    messaging.fromRenderer("ed1", { op: "open", id: "a", url: URL_ });
    expect(sockets[0]!.closed).toHaveLength(1);
    expect(relay.size).toBe(1);
    sockets[0]!.serverClose(1000); // the old one's close is not reported
    expect(messaging.posted).toHaveLength(0);
  });

  it.each([
    ["http://127.0.0.1:1/ws", /scheme http:/],
    ["ws://example.com/ws", /not a loopback/],
    ["ws://10.0.0.1:80/ws", /not a loopback/],
    ["not a url", /not a URL/],
  ])("refuses %s without opening anything", (url, why) => {
    const { messaging, sockets } = setup();
    messaging.fromRenderer("ed1", { op: "open", id: "a", url });
    expect(sockets).toHaveLength(0);
    expect(messaging.posted.map((p) => p.message.op)).toEqual(["error", "close"]);
    expect(messaging.posted[0]!.message.message).toMatch(why);
    expect(messaging.posted[1]!.message).toMatchObject({ code: 1008 });
  });

  it("accepts loopback addresses only by default", () => {
    for (const url of ["ws://127.0.0.1:1/ws", "ws://localhost:2/ws", "wss://[::1]:3/ws", "ws://127.1.2.3/ws"]) expect(loopbackOnly(url)).toBe(true);
    expect(loopbackOnly("ws://127.0.0.1.evil.com/ws")).toMatch(/loopback/);
  });

  it("reports a socket constructor that throws, and socket errors", () => {
    const messaging = new FakeMessaging();
    new Relay<string>(messaging, () => { throw new Error("ECONNREFUSED"); });
    messaging.fromRenderer("ed1", { op: "open", id: "a", url: URL_ });
    expect(messaging.posted.map((p) => p.message)).toEqual([
      { tag: RELAY_TAG, op: "error", id: "a", message: "ECONNREFUSED" },
      { tag: RELAY_TAG, op: "close", id: "a", code: 1006, reason: "ECONNREFUSED" },
    ]);

    const { messaging: m2, sockets } = setup();
    m2.fromRenderer("ed1", { op: "open", id: "b", url: URL_ });
    sockets[0]!.onerror?.({ message: "connect ECONNREFUSED 127.0.0.1:8765" });
    expect(m2.posted.at(-1)!.message).toMatchObject({ op: "error", message: "connect ECONNREFUSED 127.0.0.1:8765" });
  });

  it("ignores foreign messages and bad payloads", () => {
    const { messaging, sockets } = setup();
    for (const l of messaging.listeners) {
      l({ editor: "ed1", message: { op: "open", id: "a", url: URL_ } }); // no tag
      l({ editor: "ed1", message: "hello" });
      l({ editor: "ed1", message: null });
    }
    expect(sockets).toHaveLength(0);
    messaging.fromRenderer("ed1", { op: "open", id: "a", url: URL_ });
    sockets[0]!.open();
    messaging.fromRenderer("ed1", { op: "send", id: "a", data: "%%%not base64" });
    expect(sockets[0]!.sent).toHaveLength(0);
    expect(messaging.posted.at(-1)!.message).toMatchObject({ op: "error", message: /base64/ });
  });

  it("limits the sockets per editor, closing the oldest", () => {
    const { messaging, sockets, relay } = setup({ maxPerEditor: 2 });
    for (const id of ["a", "b", "c"]) messaging.fromRenderer("ed1", { op: "open", id, url: URL_ });
    expect(relay.size).toBe(2);
    expect(sockets[0]!.closed).toHaveLength(1);
    expect(sockets[0]!.closed[0]![1]).toBe("too many dashboards");
  });

  it("dispose closes every socket and stops listening", () => {
    const { messaging, sockets, relay } = setup();
    messaging.fromRenderer("ed1", { op: "open", id: "a", url: URL_ });
    messaging.fromRenderer("ed2", { op: "open", id: "b", url: URL_ });
    relay.dispose();
    expect(sockets.map((s) => s.closed.length)).toEqual([1, 1]);
    expect(messaging.disposed).toBe(1);
    expect(relay.size).toBe(0);
    relay.dispose();
  });
});

/** Wires a RelayClient (renderer) to a Relay (extension) through two fake messaging ends. */
function wire(createSocket: (url: string) => SocketLike) {
  const toRenderer = new Set<(m: unknown) => unknown>();
  const extension = new FakeMessaging();
  // deliver asynchronously, like postMessage does
  extension.postMessage = (message: unknown) => {
    queueMicrotask(() => { for (const l of toRenderer) l(structuredClone(message)); });
    return Promise.resolve(true);
  };
  const relay = new Relay<string>(extension, createSocket);
  const client = new RelayClient({
    postMessage: (message: unknown) => queueMicrotask(() => { for (const l of extension.listeners) l({ editor: "ed", message: structuredClone(message) }); }),
    onDidReceiveMessage: (listener: (m: unknown) => unknown) => {
      toRenderer.add(listener);
      return { dispose: () => toRenderer.delete(listener) };
    },
  });
  return { relay, client };
}

describe("RelayClient + Relay + connect() against a real ws server", () => {
  it("streams state and relays sends end to end", async () => {
    const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
    await new Promise<void>((r) => server.once("listening", () => r()));
    const port = (server.address() as { port: number }).port;
    const received: Array<{ header: Record<string, unknown>; bytes: number[][] }> = [];
    const gotMessage = new Promise<void>((resolve) => {
      server.on("connection", (ws, req) => {
        expect(req.url).toBe("/ws?token=abc");
        ws.send(encodeFrame({ type: "hello", protocol: 1, session: "run-7" }));
        const x = Float32Array.from([0.25, 4]);
        ws.send(encodeFrame({ type: "state", state: { run: { state: "running", step: 1 }, points: { n: 2, x: null } } }, [x], [["points", "x"]]));
        ws.on("message", (data: Buffer) => {
          const ab = data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) as ArrayBuffer;
          const { header, buffers } = decodeFrame(ab);
          received.push({ header, bytes: buffers.map((b) => Array.from(new Uint8Array(b.buffer, b.byteOffset, b.byteLength))) });
          ws.send(encodeFrame({ type: "state", state: { run: { state: "paused", step: 2 } } }));
          resolve();
        });
      });
    });
    const { relay, client } = wire((url) => new NodeWebSocket(url) as unknown as SocketLike);
    try {
      const url = socketUrl(readPayload({ url: `http://127.0.0.1:${port}/`, token: "abc", session: "run-7" }));
      const model = await connect(url, client.Socket, { timeoutMs: 5000 });
      expect(model.session).toBe("run-7");
      expect((model.get("points") as { x: DataView }).x.getFloat32(4, true)).toBe(4);
      const changed = new Promise((r) => model.on("change:run", (_m: unknown, v: unknown) => r(v)));
      model.send({ type: "select", n: 2 }, undefined, [Uint32Array.from([5, 6]).buffer]);
      await gotMessage;
      expect(received[0]!.header).toEqual({ type: "message", content: { type: "select", n: 2 }, buffers: [{ offset: 0, length: 8 }] });
      expect(received[0]!.bytes).toEqual([[5, 0, 0, 0, 6, 0, 0, 0]]);
      expect(await changed).toEqual({ state: "paused", step: 2 });

      const closed = new Promise((r) => model.on("close", r));
      for (const c of server.clients) c.close(1001, "kernel stopped");
      expect(await closed).toMatchObject({ code: 1001, reason: "kernel stopped" });
      expect(relay.size).toBe(0);
    } finally {
      relay.dispose();
      client.dispose();
      await new Promise((r) => server.close(r));
    }
  });

  it("rejects clearly when nothing listens", async () => {
    const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
    await new Promise<void>((r) => server.once("listening", () => r()));
    const port = (server.address() as { port: number }).port;
    await new Promise((r) => server.close(r));
    const { relay, client } = wire((url) => new NodeWebSocket(url) as unknown as SocketLike);
    try {
      const err = await connect(`ws://127.0.0.1:${port}/ws?token=zz`, client.Socket, { timeoutMs: 5000 }).catch((e: Error) => e);
      expect((err as Error).message).toMatch(/ECONNREFUSED/);
      expect((err as Error).message).toMatch(/before any dashboard state/);
      expect((err as Error).message).not.toContain("zz");
    } finally {
      relay.dispose();
      client.dispose();
    }
  });

  it("surfaces the relay's refusal", async () => {
    const { relay, client } = wire(() => { throw new Error("should not open"); });
    try {
      await expect(connect("ws://example.com/ws?token=q", client.Socket, { timeoutMs: 5000 })).rejects.toThrow(/not a loopback address/);
    } finally {
      relay.dispose();
      client.dispose();
    }
  });
});

describe("RelayClient (renderer side)", () => {
  function client(answerTimeoutMs?: number) {
    const posted: Array<Record<string, unknown>> = [];
    const listeners = new Set<(m: unknown) => unknown>();
    const c = new RelayClient({
      postMessage: (m: unknown) => posted.push(m as Record<string, unknown>),
      onDidReceiveMessage: (l: (m: unknown) => unknown) => {
        listeners.add(l);
        return { dispose: () => listeners.delete(l) };
      },
    }, { answerTimeoutMs });
    const fromExtension = (m: Record<string, unknown>) => { for (const l of listeners) l({ tag: RELAY_TAG, ...m }); };
    return { c, posted, fromExtension, listeners };
  }

  it("behaves like a WebSocket: open, binary messages, send, close", async () => {
    const { c, posted, fromExtension } = client();
    const s = new c.Socket("ws://127.0.0.1:1/ws?token=t");
    const events: string[] = [];
    s.onopen = () => events.push("open");
    s.onmessage = (ev: { data: ArrayBuffer }) => events.push(`message ${new Uint8Array(ev.data).join(",")}`);
    s.onclose = (ev: { code: number }) => events.push(`close ${ev.code}`);
    const id = posted[0]!.id as string;
    expect(posted[0]).toEqual({ tag: RELAY_TAG, op: "open", id, url: "ws://127.0.0.1:1/ws?token=t" });
    expect(() => s.send(new ArrayBuffer(1))).toThrow(/not open/);
    fromExtension({ op: "message", id, data: toBase64(Uint8Array.from([1])) }); // before open: dropped
    fromExtension({ op: "open", id });
    fromExtension({ op: "message", id, data: toBase64(Uint8Array.from([7, 8])) });
    fromExtension({ op: "message", id: "someone-else", data: toBase64(Uint8Array.from([9])) });
    s.send(Uint16Array.from([258]).buffer);
    expect(posted[1]).toEqual({ tag: RELAY_TAG, op: "send", id, data: toBase64(Uint8Array.from([2, 1])) });
    s.close(1000, "done");
    expect(posted[2]).toEqual({ tag: RELAY_TAG, op: "close", id, code: 1000, reason: "done" });
    await Promise.resolve();
    expect(events).toEqual(["open", "message 7,8", "close 1000"]);
    fromExtension({ op: "message", id, data: toBase64(Uint8Array.from([1])) }); // after close: dropped
    expect(events).toHaveLength(3);
  });

  it("gives up when the extension never answers", () => {
    vi.useFakeTimers();
    try {
      const { c, posted } = client(1000);
      const s = new c.Socket("ws://127.0.0.1:1/ws");
      const onerror = vi.fn();
      const onclose = vi.fn();
      s.onerror = onerror;
      s.onclose = onclose;
      vi.advanceTimersByTime(999);
      expect(onerror).not.toHaveBeenCalled();
      vi.advanceTimersByTime(1);
      expect(onerror.mock.calls[0]![0].message).toMatch(/did not answer/);
      expect(posted.at(-1)).toMatchObject({ op: "close", code: 1006 });
      vi.runAllTicks();
    } finally {
      vi.useRealTimers();
    }
  });

  it("an answer cancels the deadline; dispose closes every socket and stops listening", async () => {
    vi.useFakeTimers();
    try {
      const { c, posted, fromExtension, listeners } = client(1000);
      const s = new c.Socket("ws://127.0.0.1:1/ws");
      const onerror = vi.fn();
      s.onerror = onerror;
      fromExtension({ op: "open", id: posted[0]!.id });
      vi.advanceTimersByTime(5000);
      expect(onerror).not.toHaveBeenCalled();
      c.dispose();
      expect(posted.at(-1)).toMatchObject({ op: "close", code: 1001 });
      expect(listeners.size).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe("payload", () => {
  it("turns the bridge's page URL into its socket URL with the token", () => {
    const p = (url: string, token = "t") => socketUrl(readPayload({ url, token, session: "s" }));
    expect(p("http://127.0.0.1:8765/")).toBe("ws://127.0.0.1:8765/ws?token=t");
    expect(p("http://127.0.0.1:8765")).toBe("ws://127.0.0.1:8765/ws?token=t");
    expect(p("https://host/proxy/8765/")).toBe("wss://host/proxy/8765/ws?token=t");
    expect(p("http://127.0.0.1:8765/?token=t#x")).toBe("ws://127.0.0.1:8765/ws?token=t");
    expect(p("ws://127.0.0.1:8765/ws")).toBe("ws://127.0.0.1:8765/ws?token=t");
    expect(p("ws://127.0.0.1:8765/ws?token=already", "other")).toBe("ws://127.0.0.1:8765/ws?token=already");
    expect(() => p("file:///x")).toThrow(/scheme/);
  });

  it("refuses payloads without a url", () => {
    expect(() => readPayload(null)).toThrow(/payload/);
    expect(() => readPayload({ token: "t" })).toThrow(/no url/);
    expect(readPayload({ url: "ws://h/ws" })).toEqual({ url: "ws://h/ws", token: "", session: "" });
  });
});
