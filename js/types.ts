// Protocol shared with onthefly_nb (Python). JS only reads these traits and
// only ever writes through `model.send({type: "command", ...})`.

/** A callback registered with `model.on`. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Listener = (...args: any[]) => void;

/**
 * The minimal model every host must provide. `AnyModel` from
 * `@anywidget/types` satisfies it; so will a future WebSocket transport.
 */
export interface DashboardModel {
  get(key: string): unknown;
  on(event: string, callback: Listener): void;
  off(event?: string | null, callback?: Listener | null): void;
  send(content: unknown, callbacks?: unknown, buffers?: ArrayBuffer[] | ArrayBufferView[]): void;
}

export type RunState =
  | "idle"
  | "running"
  | "paused"
  | "stopping"
  | "finished"
  | "stopped"
  | "failed";

export const RUN_STATES: readonly RunState[] = [
  "idle",
  "running",
  "paused",
  "stopping",
  "finished",
  "stopped",
  "failed",
];

export interface EvalResult {
  step: number;
  loss: number;
  accuracy: number | null;
}

export interface RunInfo {
  project: string;
  run_name: string;
  state: RunState;
  step: number;
  epoch: number;
  max_epochs: number | null;
  steps_per_epoch: number;
  samples_per_sec: number | null;
  eta_sec: number | null;
  device: string;
  error: string | null;
  val: EvalResult | null;
  test: EvalResult | null;
  task: "classification" | "regression" | null;
  seen: number;
  n_samples: number;
}

export interface RunEvent {
  seq: number;
  time: number;
  step: number;
  kind: string;
  [extra: string]: unknown;
}

export type CommandName = "pause" | "resume" | "stop" | "step" | "validate" | "test";

export interface Command {
  type: "command";
  name: CommandName;
  n?: number;
}

// ---------------------------------------------------------------------------
// Defensive normalisation: traits may be missing, null or partially filled
// while the Python side starts up.

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function num(v: unknown, fallback: number): number {
  return typeof v === "number" && Number.isFinite(v) ? v : fallback;
}

function numOrNull(v: unknown): number | null {
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

function str(v: unknown, fallback = ""): string {
  return typeof v === "string" ? v : fallback;
}

function evalResult(v: unknown): EvalResult | null {
  if (!isObject(v)) return null;
  const loss = numOrNull(v.loss);
  if (loss === null) return null;
  return { step: num(v.step, 0), loss, accuracy: numOrNull(v.accuracy) };
}

export function normalizeRun(v: unknown): RunInfo {
  const r = isObject(v) ? v : {};
  const state = RUN_STATES.includes(r.state as RunState) ? (r.state as RunState) : "idle";
  const task = r.task === "classification" || r.task === "regression" ? r.task : null;
  return {
    project: str(r.project),
    run_name: str(r.run_name),
    state,
    step: num(r.step, 0),
    epoch: num(r.epoch, 0),
    max_epochs: numOrNull(r.max_epochs),
    steps_per_epoch: num(r.steps_per_epoch, 0),
    samples_per_sec: numOrNull(r.samples_per_sec),
    eta_sec: numOrNull(r.eta_sec),
    device: str(r.device),
    error: typeof r.error === "string" ? r.error : null,
    val: evalResult(r.val),
    test: evalResult(r.test),
    task,
    seen: num(r.seen, 0),
    n_samples: num(r.n_samples, 0),
  };
}

/** `val_curve`: array of [step, loss]; non-finite points are dropped. */
export function normalizeValCurve(v: unknown): Array<[number, number]> {
  if (!Array.isArray(v)) return [];
  const out: Array<[number, number]> = [];
  for (const p of v) {
    if (!Array.isArray(p) || p.length < 2) continue;
    const s = p[0];
    const l = p[1];
    if (typeof s === "number" && typeof l === "number" && Number.isFinite(s) && Number.isFinite(l)) {
      out.push([s, l]);
    }
  }
  return out;
}

export function normalizeEvents(v: unknown): RunEvent[] {
  if (!Array.isArray(v)) return [];
  const out: RunEvent[] = [];
  for (const e of v) {
    if (!isObject(e)) continue;
    out.push({ ...e, seq: num(e.seq, 0), time: num(e.time, 0), step: num(e.step, 0), kind: str(e.kind, "event") });
  }
  return out;
}

/** One row of the hard-sample cluster summary (`clusters` trait), ordered by mean loss. */
export interface ClusterRow {
  cluster: number;
  size: number;
  mean_loss: number | null;
  loss_vs_median: number | null;
  top_labels: string;
  top_predictions: string;
}

export function normalizeClusters(v: unknown): ClusterRow[] {
  if (!Array.isArray(v)) return [];
  return v.filter(isObject).map((r) => ({
    cluster: num(r.cluster, -1),
    size: num(r.size, 0),
    mean_loss: numOrNull(r.mean_loss),
    loss_vs_median: numOrNull(r.loss_vs_median),
    top_labels: str(r.top_labels),
    top_predictions: str(r.top_predictions),
  }));
}
