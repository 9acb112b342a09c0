import { afterEach, describe, expect, it, vi } from "vitest";
import { socketUrlFor, tokenFrom } from "../../transport/standalone";
import {
  type BufferRef,
  FrameError,
  type SocketLike,
  connect,
  decodeFrame,
  encodeFrame,
  putBuffers,
  redactUrl,
} from "../../transport/transport";

/** A fake browser WebSocket: the test plays the server through `serverSend` and `serverClose`. */
class FakeSocket implements SocketLike {
  static instances: FakeSocket[] = [];
  binaryType = "blob";
  readyState = 0;
  sent: ArrayBuffer[] = [];
  closeCalls: Array<[number | undefined, string | undefined]> = [];
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  onclose: ((ev: { code?: number; reason?: string }) => void) | null = null;

  constructor(public url: string) {
    FakeSocket.instances.push(this);
  }

  static last(): FakeSocket {
    return FakeSocket.instances[FakeSocket.instances.length - 1]!;
  }

  send(data: ArrayBuffer): void {
    if (this.readyState !== 1) throw new Error("InvalidStateError: not open");
    this.sent.push(data);
  }

  close(code?: number, reason?: string): void {
    this.closeCalls.push([code, reason]);
    if (this.readyState >= 2) return;
    this.readyState = 2;
    queueMicrotask(() => this.serverClose(code ?? 1005, reason ?? ""));
  }

  // ---- the server's side
  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }

  serverSend(header: Record<string, unknown>, buffers: ArrayBufferView[] = [], paths?: Array<Array<string | number>>): void {
    if (this.readyState !== 1) this.open();
    this.onmessage?.({ data: encodeFrame(header, buffers, paths) });
  }

  serverRaw(data: unknown): void {
    if (this.readyState !== 1) this.open();
    this.onmessage?.({ data });
  }

  serverError(): void {
    this.onerror?.({});
  }

  serverClose(code = 1006, reason = ""): void {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
}

afterEach(() => {
  FakeSocket.instances = [];
  vi.restoreAllMocks();
  vi.useRealTimers();
});

const u8 = (...xs: number[]) => Uint8Array.from(xs);
const bytesOf = (dv: DataView) => Array.from(new Uint8Array(dv.buffer, dv.byteOffset, dv.byteLength));

describe("frames", () => {
  it("round-trips a header without buffers", () => {
    const frame = encodeFrame({ type: "hello", protocol: 1, session: "run-1" });
    const { header, buffers } = decodeFrame(frame);
    expect(header).toEqual({ type: "hello", protocol: 1, session: "run-1", buffers: [] });
    expect(buffers).toEqual([]);
  });

  it("lays out the wire format: uint32 LE header length, UTF-8 JSON, then the payload", () => {
    const frame = encodeFrame({ type: "message", content: { name: "é" } }, [u8(7, 8, 9)]);
    const view = new DataView(frame);
    const h = view.getUint32(0, true);
    const json = new TextDecoder().decode(new Uint8Array(frame, 4, h));
    expect(JSON.parse(json)).toEqual({ type: "message", content: { name: "é" }, buffers: [{ offset: 0, length: 3 }] });
    expect(json).toContain("é"); // UTF-8, not \\u escapes
    expect(h).toBe(new TextEncoder().encode(json).byteLength);
    expect(Array.from(new Uint8Array(frame, 4 + h))).toEqual([7, 8, 9]);
    expect(frame.byteLength).toBe(4 + h + 3);
  });

  it("round-trips UTF-8 text of every width", () => {
    const text = "loss ↓ 0.5 — naïve 日本語 🚀 \u0000 \"quoted\" \\ back";
    const { header } = decodeFrame(encodeFrame({ type: "state", state: { run: { run_name: text } } }));
    expect((header.state as { run: { run_name: string } }).run.run_name).toBe(text);
  });

  it("round-trips several buffers of odd lengths, as views into the frame without copies", () => {
    const a = Float32Array.from([1.5, -2, 3.25]);
    const b = u8(1, 2, 3, 4, 5); // 5 bytes: the next buffer starts unaligned
    const c = Uint16Array.from([65535, 7]);
    const frame = encodeFrame({ type: "message", content: null }, [a, b, c]);
    const { header, buffers } = decodeFrame(frame);
    expect(header.buffers).toEqual([
      { offset: 0, length: 12 },
      { offset: 12, length: 5 },
      { offset: 17, length: 4 },
    ]);
    expect(buffers.map((d) => d.buffer)).toEqual([frame, frame, frame]);
    expect([0, 1, 2].map((i) => buffers[0]!.getFloat32(i * 4, true))).toEqual([1.5, -2, 3.25]);
    expect(bytesOf(buffers[1]!)).toEqual([1, 2, 3, 4, 5]);
    expect(buffers[2]!.getUint16(0, true)).toBe(65535);
    expect(buffers[2]!.getUint16(2, true)).toBe(7);
  });

  it("sends exactly a view's bytes, not its whole backing buffer", () => {
    const backing = u8(0, 0, 9, 8, 7, 0);
    const { buffers } = decodeFrame(encodeFrame({ type: "message" }, [backing.subarray(2, 5), new ArrayBuffer(0)]));
    expect(bytesOf(buffers[0]!)).toEqual([9, 8, 7]);
    expect(buffers[1]!.byteLength).toBe(0);
  });

  it("keeps buffer paths, including nested ones with list indices", () => {
    const frame = encodeFrame({ type: "state", state: {} }, [u8(1), u8(2)], [["points", "x"], ["a", 0, "b"]]);
    expect(decodeFrame(frame).header.buffers).toEqual([
      { path: ["points", "x"], offset: 0, length: 1 },
      { path: ["a", 0, "b"], offset: 1, length: 1 },
    ]);
  });

  it("decodes frames that are views into a larger buffer", () => {
    const frame = new Uint8Array(encodeFrame({ type: "message" }, [u8(4, 5)]));
    const big = new Uint8Array(frame.length + 7);
    big.set(frame, 3);
    const { header, buffers } = decodeFrame(big.subarray(3, 3 + frame.length));
    expect(header.type).toBe("message");
    expect(bytesOf(buffers[0]!)).toEqual([4, 5]);
    expect(buffers[0]!.byteOffset % 4).not.toBe(0); // any alignment is fine for a DataView
  });

  it("decodes buffers at explicit, unaligned and out-of-order offsets written by the server", () => {
    const payload = u8(0xaa, 1, 2, 3, 4, 5, 6, 7, 8);
    const json = new TextEncoder().encode(JSON.stringify({
      type: "state",
      state: {},
      buffers: [{ path: ["b"], offset: 5, length: 4 }, { path: ["a"], offset: 1, length: 3 }],
    }));
    const frame = new Uint8Array(4 + json.length + payload.length);
    new DataView(frame.buffer).setUint32(0, json.length, true);
    frame.set(json, 4);
    frame.set(payload, 4 + json.length);
    const { buffers } = decodeFrame(frame.buffer);
    expect(bytesOf(buffers[0]!)).toEqual([5, 6, 7, 8]);
    expect(bytesOf(buffers[1]!)).toEqual([1, 2, 3]);
  });

  it.each([
    ["too short", u8(1, 0)],
    ["header longer than the frame", u8(200, 0, 0, 0, 0x7b, 0x7d)],
    ["invalid UTF-8", (() => { const f = u8(2, 0, 0, 0, 0xff, 0xfe); return f; })()],
    ["not JSON", (() => { const t = new TextEncoder().encode("{nope"); const f = new Uint8Array(4 + t.length); f[0] = t.length; f.set(t, 4); return f; })()],
  ])("rejects a malformed frame: %s", (_name, frame) => {
    expect(() => decodeFrame(frame)).toThrow(FrameError);
  });

  const withHeader = (header: unknown, payload = 0) => {
    const t = new TextEncoder().encode(JSON.stringify(header));
    const f = new Uint8Array(4 + t.length + payload);
    new DataView(f.buffer).setUint32(0, t.length, true);
    f.set(t, 4);
    return f;
  };

  it.each([
    ["a list", [1, 2]],
    ["no type", { state: {} }],
    ["buffers not a list", { type: "state", buffers: {} }],
    ["a negative offset", { type: "state", buffers: [{ offset: -1, length: 1 }] }],
    ["a fractional length", { type: "state", buffers: [{ offset: 0, length: 0.5 }] }],
    ["a buffer past the payload", { type: "state", buffers: [{ offset: 2, length: 3 }] }],
    ["a bad path", { type: "state", buffers: [{ path: [{}], offset: 0, length: 1 }] }],
  ])("rejects a header with %s", (_name, header) => {
    expect(() => decodeFrame(withHeader(header, 4))).toThrow(FrameError);
  });
});

describe("putBuffers", () => {
  const dv = (n: number) => new DataView(new ArrayBuffer(n));

  it("places buffers at nested paths and creates missing containers", () => {
    const state: Record<string, unknown> = { points: { n: 2, x: null }, curve: { n: 1 } };
    const bufs = [dv(8), dv(4), dv(2), dv(1)];
    const refs: BufferRef[] = [
      { path: ["points", "x"], offset: 0, length: 8 },
      { path: ["curve", "data"], offset: 0, length: 4 },
      { path: ["deep", "list", 1, "v"], offset: 0, length: 2 },
      { offset: 0, length: 1 }, // no path: skipped
    ];
    putBuffers(state, refs, bufs);
    expect((state.points as Record<string, unknown>).x).toBe(bufs[0]);
    expect((state.points as Record<string, unknown>).n).toBe(2);
    expect((state.curve as Record<string, unknown>).data).toBe(bufs[1]);
    const list = (state.deep as { list: unknown[] }).list;
    expect(Array.isArray(list)).toBe(true);
    expect((list[1] as { v: DataView }).v).toBe(bufs[2]);
  });

  it("refuses prototype-polluting paths", () => {
    expect(() => putBuffers({}, [{ path: ["__proto__", "x"], offset: 0, length: 0 }], [dv(0)])).toThrow(FrameError);
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });
});

describe("connect", () => {
  const URL_ = "ws://127.0.0.1:9/ws?token=s3cret";
  const connectFake = (opts = {}) => connect(URL_, FakeSocket, opts);

  it("resolves after the first state frame, with every trait and binary values as DataViews", async () => {
    const p = connectFake();
    const ws = FakeSocket.last();
    expect(ws.url).toBe(URL_);
    expect(ws.binaryType).toBe("arraybuffer");
    ws.serverSend({ type: "hello", protocol: 1, session: "mnist-mlp" });
    const x = Float32Array.from([0.5, -1]);
    const index = Uint32Array.from([3, 9]);
    ws.serverSend(
      { type: "state", state: { run: { state: "paused", step: 7 }, points: { version: 1, n: 2, x: null, index: null }, plans: [] } },
      [u8(0xee), x, index], // a 1-byte buffer first: the others land unaligned
      [["unused_blob"], ["points", "x"], ["points", "index"]],
    );
    const model = await p;
    expect(model.session).toBe("mnist-mlp");
    expect(model.get("run")).toEqual({ state: "paused", step: 7 });
    expect(model.get("plans")).toEqual([]);
    const pts = model.get("points") as { x: DataView; index: DataView };
    expect(pts.x).toBeInstanceOf(DataView);
    expect(pts.x.byteOffset % 4).not.toBe(0);
    expect(pts.x.getFloat32(4, true)).toBe(-1);
    expect(pts.index.getUint32(4, true)).toBe(9);
  });

  it("fires change:<key> for each key of each later state frame, then one change", async () => {
    const p = connectFake();
    const ws = FakeSocket.last();
    ws.serverSend({ type: "state", state: { run: { step: 1 }, events: [] } });
    const model = await p;
    const seen: Array<[string, unknown]> = [];
    const onRun = vi.fn((m: unknown, v: unknown) => seen.push(["run", m === model ? v : "wrong model"]));
    const onEvents = vi.fn();
    const onChange = vi.fn();
    model.on("change:run", onRun);
    model.on("change:events", onEvents);
    model.on("change", onChange);
    ws.serverSend({ type: "state", state: { run: { step: 2 } } });
    ws.serverSend({ type: "state", state: { run: { step: 3 }, selection: { version: 1, n: 1, index: null } } }, [Uint32Array.from([42])], [["selection", "index"]]);
    expect(seen).toEqual([["run", { step: 2 }], ["run", { step: 3 }]]);
    expect(onEvents).not.toHaveBeenCalled();
    expect(model.get("events")).toEqual([]); // untouched traits keep their value
    expect(onChange).toHaveBeenCalledTimes(2);
    expect(onChange.mock.calls[1]![1]).toEqual(["run", "selection"]);
    expect((model.get("selection") as { index: DataView }).index.getUint32(0, true)).toBe(42);

    model.off("change:run", onRun);
    ws.serverSend({ type: "state", state: { run: { step: 4 } } });
    expect(onRun).toHaveBeenCalledTimes(2);
    expect(model.get("run")).toEqual({ step: 4 });

    model.off();
    ws.serverSend({ type: "state", state: { events: [1] } });
    expect(onEvents).not.toHaveBeenCalled();
    expect(onChange).toHaveBeenCalledTimes(3);
  });

  it("off(null, cb) removes cb from every event; a failing listener does not stop the others", async () => {
    const p = connectFake();
    const ws = FakeSocket.last();
    ws.serverSend({ type: "state", state: {} });
    const model = await p;
    const cb = vi.fn();
    const bad = vi.fn(() => { throw new Error("boom"); });
    const after = vi.fn();
    const err = vi.spyOn(console, "error").mockImplementation(() => {});
    model.on("change:a", cb);
    model.on("change:b", cb);
    model.on("change:c", bad);
    model.on("change:c", after);
    model.off(null, cb);
    ws.serverSend({ type: "state", state: { a: 1, b: 2, c: 3 } });
    expect(cb).not.toHaveBeenCalled();
    expect(after).toHaveBeenCalledTimes(1);
    expect(err).toHaveBeenCalled();
  });

  it("sends message frames with the content and the buffers in order", async () => {
    const p = connectFake();
    const ws = FakeSocket.last();
    ws.serverSend({ type: "state", state: {} });
    const model = await p;
    model.send({ type: "command", name: "pause" });
    const indices = Uint32Array.from([1, 5, 4_000_000_000]);
    model.send({ type: "select", n: 3 }, undefined, [indices.buffer]);
    model.send({ type: "x" }, {}, [u8(9, 9, 9, 1, 2).subarray(3), Uint16Array.from([513])]);
    expect(ws.sent).toHaveLength(3);
    const [a, b, c] = ws.sent.map((f) => decodeFrame(f));
    expect(a!.header).toEqual({ type: "message", content: { type: "command", name: "pause" }, buffers: [] });
    expect(b!.header).toEqual({ type: "message", content: { type: "select", n: 3 }, buffers: [{ offset: 0, length: 12 }] });
    expect(b!.buffers[0]!.getUint32(8, true)).toBe(4_000_000_000);
    expect(c!.header.buffers).toEqual([{ offset: 0, length: 2 }, { offset: 2, length: 2 }]);
    expect(bytesOf(c!.buffers[0]!)).toEqual([1, 2]);
    expect(c!.buffers[1]!.getUint16(0, true)).toBe(513);
    for (const ref of [...a!.header.buffers!, ...b!.header.buffers!]) expect(ref).not.toHaveProperty("path");
  });

  it("delivers error frames (and other frames) to msg:custom", async () => {
    const p = connectFake();
    const ws = FakeSocket.last();
    ws.serverSend({ type: "state", state: {} });
    const model = await p;
    const onMsg = vi.fn();
    vi.spyOn(console, "warn").mockImplementation(() => {});
    model.on("msg:custom", onMsg);
    ws.serverSend({ type: "error", protocol: 1, reason: "unknown plan 'plan-9'" });
    ws.serverSend({ type: "note", text: "hi" }, [u8(1)]);
    expect(onMsg).toHaveBeenCalledTimes(2);
    expect(onMsg.mock.calls[0]![0]).toEqual({ type: "error", protocol: 1, reason: "unknown plan 'plan-9'", buffers: [] });
    expect(onMsg.mock.calls[1]![0].type).toBe("note");
    expect(bytesOf(onMsg.mock.calls[1]![1][0])).toEqual([1]);
  });

  it("ignores malformed frames after connecting, and keeps working", async () => {
    const p = connectFake();
    const ws = FakeSocket.last();
    ws.serverSend({ type: "state", state: { a: 1 } });
    const model = await p;
    const err = vi.spyOn(console, "error").mockImplementation(() => {});
    const cb = vi.fn();
    model.on("change:a", cb);
    ws.serverRaw("a text frame");
    ws.serverRaw(u8(1, 2).buffer);
    ws.serverSend({ type: "state", state: "not an object" });
    ws.serverSend({ type: "state", state: { a: 2 } });
    expect(err).toHaveBeenCalledTimes(3);
    expect(cb).toHaveBeenCalledTimes(1);
    expect(model.get("a")).toBe(2);
  });

  it("tells close listeners once, drops later sends, and close() closes the socket", async () => {
    const p = connectFake();
    const ws = FakeSocket.last();
    ws.serverSend({ type: "state", state: {} });
    const model = await p;
    const onClose = vi.fn();
    model.on("close", onClose);
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    model.close();
    expect(ws.closeCalls).toEqual([[1000, "closed by the dashboard"]]);
    await Promise.resolve();
    expect(model.closed).toBe(true);
    expect(onClose).toHaveBeenCalledTimes(1);
    expect(onClose.mock.calls[0]![0]).toMatchObject({ code: 1000 });
    model.send({ type: "command", name: "resume" });
    expect(ws.sent).toHaveLength(0);
    expect(warn).toHaveBeenCalled();
    ws.serverClose(1006);
    expect(onClose).toHaveBeenCalledTimes(1);
  });

  it("rejects with a clear error, without the token, when the socket closes before any state", async () => {
    const p = connectFake();
    const ws = FakeSocket.last();
    ws.serverSend({ type: "hello", protocol: 1, session: "s" });
    ws.serverError();
    ws.serverClose(1006);
    const err = await p.catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/ws:\/\/127\.0\.0\.1:9\/ws\?token=\*\*\*/);
    expect((err as Error).message).toMatch(/code 1006 before any dashboard state/);
    expect((err as Error).message).toMatch(/the connection failed/);
    expect((err as Error).message).not.toContain("s3cret");
  });

  it("includes the server's refusal reason and the close reason", async () => {
    const p = connectFake();
    const ws = FakeSocket.last();
    ws.serverSend({ type: "error", protocol: 1, reason: "bad token" });
    ws.serverClose(1008, "policy violation");
    await expect(p).rejects.toThrow(/code 1008: policy violation.*server error: bad token/);
  });

  it("rejects a server that speaks another protocol version, and closes", async () => {
    const p = connectFake();
    const ws = FakeSocket.last();
    ws.serverSend({ type: "hello", protocol: 2, session: "s" });
    await expect(p).rejects.toThrow(/protocol 2.*speaks 1/);
    expect(ws.closeCalls).toHaveLength(1);
  });

  it("rejects when the constructor throws, and when there is no WebSocket", async () => {
    class Throws {
      constructor() {
        throw new SyntaxError("The URL's scheme must be either 'ws' or 'wss'");
      }
    }
    await expect(connect("http://x/?token=t", Throws as never)).rejects.toThrow(/cannot open http:\/\/x\/\?token=\*\*\*: The URL's scheme/);
    await expect(connect("ws://x", undefined as never)).rejects.toThrow(/no WebSocket/);
  });

  it("rejects after the timeout when no state arrives", async () => {
    vi.useFakeTimers();
    const p = connectFake({ timeoutMs: 5000 });
    const ws = FakeSocket.last();
    vi.spyOn(console, "error").mockImplementation(() => {});
    ws.serverRaw("text");
    const settled = p.catch((e: Error) => e);
    vi.advanceTimersByTime(5000);
    const err = (await settled) as Error;
    expect(err.message).toMatch(/no dashboard state .* within 5 s \(the server sent a text frame/);
    expect(ws.closeCalls).toHaveLength(1);
  });
});

describe("standalone page helpers", () => {
  it("reads the token from the query string, then the hash", () => {
    expect(tokenFrom({ search: "?token=abc&x=1", hash: "#token=zzz" })).toBe("abc");
    expect(tokenFrom({ search: "", hash: "#token=a%2Bb" })).toBe("a+b");
    expect(tokenFrom({ search: "?x=1", hash: "#tok123" })).toBe("tok123");
    expect(tokenFrom({ search: "", hash: "" })).toBeNull();
    expect(tokenFrom({ search: "?token=", hash: "#other=1" })).toBeNull();
  });

  it("builds the socket URL next to the page", () => {
    const loc = { host: "127.0.0.1:8765", protocol: "http:", pathname: "/", search: "", hash: "" };
    expect(socketUrlFor(loc, "a b&c")).toBe("ws://127.0.0.1:8765/ws?token=a%20b%26c");
    expect(socketUrlFor({ ...loc, protocol: "https:", pathname: "/proxy/8765/index.html" }, "t")).toBe(
      "wss://127.0.0.1:8765/proxy/8765/ws?token=t",
    );
  });

  it("redacts tokens", () => {
    expect(redactUrl("ws://h/ws?a=1&token=xyz&b=2")).toBe("ws://h/ws?a=1&token=***&b=2");
    expect(redactUrl("http://h/#token=xyz")).toBe("http://h/#token=***");
  });
});
