// The standalone dashboard page served by the Python bridge (onthefly_nb/bridge.py) for
// plain scripts: the page links /static/widget.css and this module, and has an element
// `#onthefly-app`. On load it reads the token from the page URL (`?token=...` or
// `#token=...`), connects to `ws(s)://<host>/ws?token=...` and mounts the dashboard.

import { mountDashboard } from "../dashboard";
import { h, styled } from "../ui/dom";
import { type SocketConstructor, type TransportModel, connect, redactUrl } from "./transport";

export const APP_ID = "onthefly-app";
export const ERROR_CLASS = "onthefly-standalone-error";
export const BANNER_CLASS = "onthefly-standalone-banner";

type LocationLike = Pick<Location, "search" | "hash" | "host" | "protocol" | "pathname">;

/** The token from the query string, else from the hash (`#token=...`, or a bare `#<token>`). */
export function tokenFrom(loc: Pick<Location, "search" | "hash">): string | null {
  const fromSearch = new URLSearchParams(loc.search).get("token");
  if (fromSearch) return fromSearch;
  const hash = loc.hash.replace(/^#/, "");
  if (!hash) return null;
  if (!hash.includes("=")) return decodeURIComponent(hash);
  return new URLSearchParams(hash).get("token") || null;
}

/** The bridge's WebSocket URL next to the page: `ws://<host>/ws?token=...` (wss behind https). */
export function socketUrlFor(loc: LocationLike, token: string): string {
  const scheme = loc.protocol === "https:" ? "wss:" : "ws:";
  // keep a path prefix (a proxy may serve the page under /proxy/<port>/)
  const base = loc.pathname.replace(/[^/]*$/, "");
  return `${scheme}//${loc.host}${base}ws?token=${encodeURIComponent(token)}`;
}

const ERROR_STYLE = "white-space: pre-wrap; padding: 12px 16px; margin: 16px 0; border-radius: 4px;"
  + "border: 1px solid var(--onthefly-error, #d32f2f); color: var(--onthefly-error, #d32f2f);"
  + "font: 13px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;";
const BANNER_STYLE = "padding: 6px 12px; margin-bottom: 8px; border-radius: 4px; font: 13px system-ui, sans-serif;"
  + "background: var(--onthefly-warn, #ef6c00); color: #fff;";

function showError(el: HTMLElement, message: string): void {
  el.replaceChildren(styled(h(el.ownerDocument, "pre", { class: ERROR_CLASS, role: "alert" }, message), ERROR_STYLE));
}

function showBanner(el: HTMLElement, message: string): void {
  el.prepend(styled(h(el.ownerDocument, "div", { class: BANNER_CLASS, role: "status" }, message), BANNER_STYLE));
}

export interface StartOptions {
  doc?: Document;
  loc?: LocationLike;
  WebSocketImpl?: SocketConstructor;
}

/**
 * Connects and mounts the dashboard into `#onthefly-app`. Resolves to the model, or to
 * null after showing why it could not (no element, no token, no connection).
 */
export async function start(options: StartOptions = {}): Promise<TransportModel | null> {
  const doc = options.doc ?? document;
  const loc = options.loc ?? doc.location;
  const el = doc.getElementById(APP_ID);
  if (!el) {
    console.error(`[onthefly] the page has no #${APP_ID} element`);
    return null;
  }
  const token = tokenFrom(loc);
  if (!token) {
    showError(el, "This page needs its access token: open the full link the training process printed (…/?token=…).");
    return null;
  }
  const url = socketUrlFor(loc, token);
  el.setAttribute("aria-busy", "true");
  let model: TransportModel;
  try {
    model = await connect(url, options.WebSocketImpl);
  } catch (err) {
    showError(el, `${(err as Error).message ?? err}\n\nIs the training process still running? Reload the page to retry.`);
    return null;
  } finally {
    el.removeAttribute("aria-busy");
  }
  if (model.session) doc.title = `onthefly · ${model.session}`;
  try {
    mountDashboard(el, model);
  } catch (err) {
    model.close();
    showError(el, `onthefly: the dashboard failed to start: ${(err as Error).message ?? err}`);
    return null;
  }
  model.on("close", (info: { code?: number; reason?: string }) => {
    const why = info?.reason ? `: ${info.reason}` : info?.code ? ` (code ${info.code})` : "";
    showBanner(el, `Disconnected from the training process${why}. The dashboard shows the last state; reload to reconnect.`);
  });
  console.info(`[onthefly] connected to ${redactUrl(url)}`);
  return model;
}

// Runs itself when loaded by the page (not when imported by tests without a DOM).
if (typeof document !== "undefined") {
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", () => void start(), { once: true });
  else void start();
}
