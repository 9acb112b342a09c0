import { describe, expect, it, vi } from "vitest";
import { WebSocketServer } from "ws";
import { decodeFrame, encodeFrame } from "../../js/transport/transport";
import { RELAY_TAG, fromBase64, toBase64 } from "../src/relay-protocol";

// A stand-in for VS Code's API: only what extension.ts touches.
const messaging = vi.hoisted(() => {
  const listeners = new Set<(e: { editor: unknown; message: unknown }) => unknown>();
  const posted: Array<{ message: Record<string, unknown>; editor: unknown }> = [];
  return {
    listeners,
    posted,
    created: [] as string[],
    api: {
      onDidReceiveMessage(l: (e: { editor: unknown; message: unknown }) => unknown) {
        listeners.add(l);
        return { dispose: () => listeners.delete(l) };
      },
      postMessage(message: unknown, editor?: unknown) {
        posted.push({ message: message as Record<string, unknown>, editor });
        return Promise.resolve(true);
      },
    },
  };
});

vi.mock("vscode", () => ({
  notebooks: {
    createRendererMessaging(id: string) {
      messaging.created.push(id);
      return messaging.api;
    },
  },
}));

describe("extension", () => {
  it("relays the renderer's socket to the bridge with the ws package, and stops on deactivation", async () => {
    const { activate, RENDERER_ID } = await import("../src/extension");
    const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
    await new Promise<void>((r) => server.once("listening", () => r()));
    const port = (server.address() as { port: number }).port;
    const got = new Promise<Buffer>((resolve) => {
      server.on("connection", (ws) => {
        ws.send(encodeFrame({ type: "hello", protocol: 1, session: "s" }));
        ws.on("message", (data: Buffer) => resolve(data));
      });
    });
    const subscriptions: Array<{ dispose(): unknown }> = [];
    try {
      activate({ subscriptions } as never);
      expect(messaging.created).toEqual([RENDERER_ID]);
      expect(RENDERER_ID).toBe("onthefly.dashboard");
      const editor = { id: "notebook-1" };
      const send = (m: Record<string, unknown>) => { for (const l of messaging.listeners) l({ editor, message: { tag: RELAY_TAG, ...m } }); };
      send({ op: "open", id: "r1", url: `ws://127.0.0.1:${port}/ws?token=t` });
      await vi.waitFor(() => expect(messaging.posted.map((p) => p.message.op)).toEqual(["open", "message"]));
      expect(messaging.posted.every((p) => p.editor === editor)).toBe(true);
      const hello = decodeFrame(fromBase64(messaging.posted[1]!.message.data as string));
      expect(hello.header).toMatchObject({ type: "hello", session: "s" });
      send({ op: "send", id: "r1", data: toBase64(encodeFrame({ type: "message", content: { type: "command", name: "pause" } })) });
      const frame = await got;
      expect(decodeFrame(frame).header.content).toEqual({ type: "command", name: "pause" });

      const closed = new Promise<void>((r) => { for (const c of server.clients) c.once("close", () => r()); });
      for (const s of subscriptions) s.dispose();
      await closed;
      expect(messaging.listeners.size).toBe(0);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});
