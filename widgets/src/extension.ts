// Extension host side: relays the renderer's WebSocket frames to the kernel's bridge, for
// set-ups where the notebook webview cannot reach it (Remote-SSH, WSL, dev containers,
// Codespaces). The extension runs next to the kernel (extensionKind "workspace").

import * as vscode from "vscode";
import WebSocket from "ws";
import type { SocketLike } from "../../js/transport/transport";
import { Relay } from "./relay";

export const RENDERER_ID = "onthefly.dashboard";

export function activate(context: vscode.ExtensionContext): void {
  const messaging = vscode.notebooks.createRendererMessaging(RENDERER_ID);
  // maxPayload: one sample map of 1M points is about 14 MB; leave room
  const relay = new Relay(messaging, (url) => new WebSocket(url, { maxPayload: 256 * 1024 * 1024 }) as unknown as SocketLike);
  context.subscriptions.push(relay);
}

export function deactivate(): void {}
