// The output the kernel displays for the renderer: MIME type
// application/vnd.onthefly.dashboard+json with `{url, token, session}`.

export const MIME_TYPE = "application/vnd.onthefly.dashboard+json";

export interface DashboardPayload {
  /** Where the bridge listens: its page (`http://127.0.0.1:<port>/`) or its socket (`ws://.../ws`). */
  url: string;
  token: string;
  session: string;
}

/** The payload, checked; throws an Error that says what is wrong. */
export function readPayload(value: unknown): DashboardPayload {
  if (typeof value !== "object" || value === null) throw new Error("the output has no dashboard payload");
  const v = value as Record<string, unknown>;
  if (typeof v.url !== "string" || !v.url) throw new Error("the dashboard payload has no url");
  const token = typeof v.token === "string" ? v.token : "";
  const session = typeof v.session === "string" ? v.session : "";
  return { url: v.url, token, session };
}

/**
 * The bridge's WebSocket URL: an http(s) page URL becomes ws(s) with the last path segment
 * replaced by `ws` (`http://h:p/` -> `ws://h:p/ws`); a ws(s) URL is kept. The token is added
 * unless the URL already has one.
 */
export function socketUrl(payload: DashboardPayload): string {
  const u = new URL(payload.url);
  if (u.protocol === "http:" || u.protocol === "https:") {
    u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
    if (!/\/ws$/.test(u.pathname)) u.pathname = u.pathname.replace(/\/?[^/]*$/, "/ws");
    u.hash = "";
  } else if (u.protocol !== "ws:" && u.protocol !== "wss:") {
    throw new Error(`the dashboard url has an unsupported scheme: ${u.protocol}`);
  }
  if (payload.token && !u.searchParams.has("token")) u.searchParams.set("token", payload.token);
  return u.toString();
}
