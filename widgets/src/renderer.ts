// VS Code notebook renderer for application/vnd.onthefly.dashboard+json outputs
// ({url, token, session}): connects to the kernel's WebSocket bridge and mounts the same
// dashboard the anywidget shows. When the webview cannot reach the bridge (remote set-ups)
// and the context has renderer messaging, the extension host relays the socket.

import type { ActivationFunction, OutputItem, RendererContext } from "vscode-notebook-renderer";
import { mountDashboard } from "../../js/dashboard";
import { type SocketConstructor, type TransportModel, connect } from "../../js/transport/transport";
import { h, styled } from "../../js/ui/dom";
import css from "../../js/widget.css";
import { type DashboardPayload, readPayload, socketUrl } from "./payload";
import { RelayClient } from "./relay-client";

export const STYLE_ID = "onthefly-dashboard-style";
const STATUS_CLASS = "onthefly-renderer-status";
const ERROR_CLASS = "onthefly-renderer-error";
const BANNER_CLASS = "onthefly-renderer-banner";

/** How long to wait for the bridge directly before trying the relay, and in all. */
const DIRECT_TIMEOUT_MS = 8_000;
const TIMEOUT_MS = 30_000;

function injectStyle(doc: Document): void {
  if (doc.getElementById(STYLE_ID)) return;
  const style = doc.createElement("style");
  style.id = STYLE_ID;
  style.textContent = css;
  doc.head.appendChild(style);
}

const ERROR_STYLE = "white-space: pre-wrap; padding: 8px 12px; margin: 4px 0;"
  + "border: 1px solid var(--vscode-errorForeground, #d32f2f); color: var(--vscode-errorForeground, #d32f2f);"
  + "font: 12px var(--vscode-editor-font-family, monospace);";
const STATUS_STYLE = "padding: 8px 12px; color: var(--vscode-descriptionForeground, #59636e);"
  + "font: 13px var(--vscode-font-family, system-ui, sans-serif);";
const BANNER_STYLE = "padding: 4px 10px; margin-bottom: 6px; border-radius: 3px;"
  + "font: 12px var(--vscode-font-family, system-ui, sans-serif);"
  + "background: var(--vscode-inputValidation-warningBackground, #ef6c00); color: var(--vscode-foreground, #fff);";

function note(el: HTMLElement, cls: string, text: string, error: boolean): void {
  const [tag, role, style] = error ? (["pre", "alert", ERROR_STYLE] as const) : (["div", "status", STATUS_STYLE] as const);
  el.replaceChildren(styled(h(el.ownerDocument, tag, { class: cls, role }, text), style));
}

function banner(el: HTMLElement, text: string): void {
  el.prepend(styled(h(el.ownerDocument, "div", { class: BANNER_CLASS, role: "status" }, text), BANNER_STYLE));
}

interface Mounted {
  abort: AbortController;
  model?: TransportModel;
  cleanup?: () => void;
}

/** What activate() returns, with the extras tests and hosts may use. */
export interface DashboardRenderer {
  renderOutputItem(outputItem: OutputItem, element: HTMLElement, signal?: AbortSignal): Promise<void>;
  disposeOutputItem(id?: string): void;
  /** The models of the dashboards on screen, by output id (for tests). */
  readonly models: ReadonlyMap<string, TransportModel>;
  [key: string]: unknown;
}

/** What a renderer throws to have VS Code render the output's next format instead. */
export const FALLBACK = "vscode.fallbackToNextRenderer";

export const activate = ((context: RendererContext<unknown>): DashboardRenderer => {
  const relay = RelayClient.available(context) ? new RelayClient(context) : null;
  const live = new Map<string, Mounted>();
  const models = new Map<string, TransportModel>();

  const dispose = (id: string) => {
    const m = live.get(id);
    if (!m) return;
    live.delete(id);
    models.delete(id);
    m.abort.abort();
    try {
      m.cleanup?.();
    } finally {
      m.model?.close();
    }
  };

  async function open(payload: DashboardPayload, aborted: () => boolean): Promise<TransportModel> {
    const url = socketUrl(payload);
    const Direct = (globalThis as { WebSocket?: SocketConstructor }).WebSocket;
    let directError: Error | null = null;
    if (Direct) {
      try {
        return await connect(url, Direct, { timeoutMs: relay ? DIRECT_TIMEOUT_MS : TIMEOUT_MS });
      } catch (err) {
        directError = err as Error;
      }
    }
    if (!relay || aborted()) throw directError ?? new Error("onthefly: this webview has no WebSocket and no relay");
    try {
      return await connect(url, relay.Socket, { timeoutMs: TIMEOUT_MS });
    } catch (err) {
      const direct = directError ? `directly: ${directError.message}\n` : "";
      throw new Error(`${direct}through the extension: ${(err as Error).message}`);
    }
  }

  return {
    models,

    async renderOutputItem(outputItem: OutputItem, element: HTMLElement, signal?: AbortSignal): Promise<void> {
      dispose(outputItem.id);
      const mounted: Mounted = { abort: new AbortController() };
      live.set(outputItem.id, mounted);
      const aborted = () => mounted.abort.signal.aborted || Boolean(signal?.aborted);

      let payload: DashboardPayload;
      try {
        payload = readPayload(outputItem.json());
      } catch (err) {
        note(element, ERROR_CLASS, `onthefly: ${(err as Error).message}`, true);
        return;
      }
      if (context.workspace && context.workspace.isTrusted === false) {
        note(element, STATUS_CLASS, "onthefly: trust this workspace to show the live training dashboard.", false);
        return;
      }
      injectStyle(element.ownerDocument);
      const name = payload.session ? ` ${payload.session}` : "";
      note(element, STATUS_CLASS, `Connecting to the training process${name}…`, false);

      let model: TransportModel;
      try {
        model = await open(payload, aborted);
      } catch (err) {
        if (aborted()) return;
        // The process is gone (a saved notebook reopened) or out of reach: VS Code shows the output's
        // next format instead, the HTML of the run's summary or its frozen final dashboard.
        element.replaceChildren();
        console.warn(`[onthefly] cannot reach the training process${name}: ${(err as Error).message}`);
        const fallback = new Error(`onthefly: cannot reach the training process${name}.\n${(err as Error).message}`);
        fallback.name = FALLBACK;
        throw fallback;
      }
      if (aborted()) {
        model.close();
        return;
      }
      mounted.model = model;
      models.set(outputItem.id, model);
      element.replaceChildren();
      mounted.cleanup = mountDashboard(element, model);
      model.on("close", (info: { code?: number; reason?: string }) => {
        if (aborted()) return;
        const why = info?.reason ? `: ${info.reason}` : "";
        banner(element, `Disconnected from the training process${why}. This is its last state; re-run the cell to reconnect.`);
      });
    },

    disposeOutputItem(id?: string): void {
      if (id !== undefined) dispose(id);
      else for (const key of [...live.keys()]) dispose(key);
    },
  };
}) satisfies ActivationFunction;
