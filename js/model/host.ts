// The model a host hands to `mountDashboard` (anywidget's, or the WebSocket transport's).
// The dashboard only reads traits and writes through `send`, see docs/protocol.md.

/** A callback registered with `model.on`. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Listener = (...args: any[]) => void;

/**
 * The minimal model every host must provide. `AnyModel` from `@anywidget/types`
 * satisfies it, and so does the WebSocket transport's model.
 */
export interface DashboardModel {
  get(key: string): unknown;
  on(event: string, callback: Listener): void;
  off(event?: string | null, callback?: Listener | null): void;
  send(content: unknown, callbacks?: unknown, buffers?: ArrayBuffer[] | ArrayBufferView[]): void;
}
