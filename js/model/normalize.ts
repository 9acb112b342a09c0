// Defensive normalisation of the JSON traits into the types of types.ts: traits may be
// missing, null or partially filled while the Python side starts up.

import type * as C from "./contract";
import { isObject, num, numOrNull, str } from "./guards";
import {
  type ClusterRow,
  type CompareTable,
  type EvalResult,
  EVENT_KINDS,
  type EventKind,
  type Health,
  type HealthStatus,
  type Histogram,
  LINEAGE_KINDS,
  type LineageKind,
  type LineageNode,
  type Loose,
  PLAN_KINDS,
  PLAN_STATUSES,
  type ParamSpec,
  type Plan,
  type PlanKind,
  type PlanStatus,
  RUN_STATES,
  type RunEvent,
  type RunInfo,
  type RunState,
} from "./types";

/** ``v`` as an object whose keys are those of the contract type ``T`` (empty when it is not an object). */
function loose<T>(v: unknown): Loose<T> {
  return (isObject(v) ? v : {}) as Loose<T>;
}

function oneOf<T extends string>(values: readonly T[], v: unknown): v is T {
  return (values as readonly unknown[]).includes(v);
}

function evalResult(value: unknown): EvalResult | null {
  if (!isObject(value)) return null;
  const v = loose<C.EvalResult>(value);
  const loss = numOrNull(v.loss);
  if (loss === null) return null;
  return { step: num(v.step, 0), loss, accuracy: numOrNull(v.accuracy) };
}

export function normalizeRun(v: unknown): RunInfo {
  const r = loose<C.RunTrait>(v);
  const state: RunState = oneOf(RUN_STATES, r.state) ? r.state : "idle";
  const task = r.task === "classification" || r.task === "regression" ? r.task : null;
  return {
    project: str(r.project),
    run_name: str(r.run_name),
    state,
    step: num(r.step, 0),
    epoch: num(r.epoch, 0),
    max_epochs: numOrNull(r.max_epochs),
    steps_per_epoch: num(r.steps_per_epoch, 0),
    total_steps: numOrNull(r.total_steps),
    samples_per_sec: numOrNull(r.samples_per_sec),
    eta_sec: numOrNull(r.eta_sec),
    device: str(r.device),
    error: typeof r.error === "string" ? r.error : null,
    val: evalResult(r.val),
    test: evalResult(r.test),
    task,
    seen: num(r.seen, 0),
    n_samples: num(r.n_samples, 0),
    lr: numOrNull(r.lr),
    deterministic: r.deterministic === true,
    per_sample_off: typeof r.per_sample_off === "string" ? r.per_sample_off : null,
  };
}

/** `val_curve`: array of [step, loss]; non-finite points are dropped. */
export function normalizeValCurve(v: unknown): Array<[number, number]> {
  return finitePairs(v);
}

/** The ``[number, number]`` pairs of ``v`` whose two values are finite (others are dropped). */
export function finitePairs(v: unknown): Array<[number, number]> {
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

/** The kernel's refusal of a message of type ``message`` logged after event ``seq`` (a
 * `rejected_message` event), if any: what a form that sent one shows. */
export function rejectionAfter(events: readonly RunEvent[], seq: number, message: string): RunEvent | undefined {
  return events.find((e) => e.seq > seq && e.kind === "rejected_message" && e.message === message);
}

/** `events`: events of a kind the contract does not declare are dropped. */
export function normalizeEvents(v: unknown): RunEvent[] {
  if (!Array.isArray(v)) return [];
  const out: RunEvent[] = [];
  for (const raw of v) {
    if (!isObject(raw)) continue;
    const e = loose<C.RunEvent>(raw);
    if (!oneOf<EventKind>(EVENT_KINDS, e.kind)) continue;
    out.push({ ...raw, seq: num(e.seq, 0), time: num(e.time, 0), step: num(e.step, 0), kind: e.kind });
  }
  return out;
}

export function normalizeClusters(v: unknown): ClusterRow[] {
  if (!Array.isArray(v)) return [];
  return v.filter(isObject).map((raw) => loose<ClusterRow>(raw)).map((r) => ({
    cluster: num(r.cluster, -1),
    size: num(r.size, 0),
    mean_loss: numOrNull(r.mean_loss),
    loss_vs_median: numOrNull(r.loss_vs_median),
    top_labels: str(r.top_labels),
    top_predictions: str(r.top_predictions),
  }));
}

const QUANTILE_KEYS = ["p1", "p5", "p25", "p50", "p75", "p95", "p99", "max", "mean"] as const;

/** Null unless there is at least one bin with finite, increasing edges. */
export function normalizeHistogram(value: unknown): Histogram | null {
  const v = loose<C.HistogramTrait>(value);
  if (!Array.isArray(v.edges) || !Array.isArray(v.counts)) return null;
  const bins = Math.min(v.counts.length, v.edges.length - 1);
  if (bins < 1) return null;
  const edges = v.edges.slice(0, bins + 1).map((e) => num(e, Number.NaN));
  for (let i = 0; i <= bins; i++) {
    if (!Number.isFinite(edges[i]!) || (i > 0 && !(edges[i]! >= edges[i - 1]!))) return null;
  }
  const counts = v.counts.slice(0, bins).map((c) => Math.max(0, num(c, 0)));
  const quantiles: Histogram["quantiles"] = {};
  const q = loose<C.Quantiles>(v.quantiles);
  for (const k of QUANTILE_KEYS) {
    const x = numOrNull(q[k]);
    if (x !== null) quantiles[k] = x;
  }
  return { edges, counts, quantiles };
}

/** `plans`: plans without an id, or of a kind the contract does not declare, are dropped; an unknown status
 * reads as "failed". */
export function normalizePlans(v: unknown): Plan[] {
  if (!Array.isArray(v)) return [];
  const out: Plan[] = [];
  for (const raw of v) {
    if (!isObject(raw)) continue;
    const p = loose<C.Plan>(raw);
    const id = str(p.id);
    if (id === "" || !oneOf<PlanKind>(PLAN_KINDS, p.kind)) continue;
    const params: Record<string, number> = {};
    if (isObject(p.params)) {
      for (const [k, x] of Object.entries(p.params)) if (typeof x === "number" && Number.isFinite(x)) params[k] = x;
    }
    const specs: Record<string, ParamSpec> = {};
    const rawSpecs = isObject(p.param_specs) ? p.param_specs : {};
    for (const name of new Set([...Object.keys(params), ...Object.keys(rawSpecs)])) {
      const s = loose<C.ParamSpec>(rawSpecs[name]);
      specs[name] = { label: str(s.label, name), min: numOrNull(s.min), max: numOrNull(s.max), step: numOrNull(s.step) };
    }
    const status: PlanStatus = oneOf(PLAN_STATUSES, p.status) ? p.status : "failed";
    out.push({
      id,
      kind: p.kind,
      title: str(p.title, p.kind),
      evidence: str(p.evidence),
      step: num(p.step, 0),
      params,
      param_specs: specs,
      status,
      result: str(p.result),
      expires: numOrNull(p.expires),
    });
  }
  return out;
}

const idOf = (v: unknown): string => (typeof v === "number" && Number.isFinite(v) ? String(v) : str(v));

/** `lineage`: nodes without an id are dropped; an unknown kind reads as "run". */
export function normalizeLineage(v: unknown): LineageNode[] {
  if (!Array.isArray(v)) return [];
  const out: LineageNode[] = [];
  for (const raw of v) {
    if (!isObject(raw)) continue;
    const n = loose<C.LineageNode>(raw);
    const id = idOf(n.id);
    if (!id) continue;
    const kind: LineageKind = oneOf(LINEAGE_KINDS, n.kind) ? n.kind : "run";
    out.push({
      id,
      parent: idOf(n.parent) || null,
      kind,
      label: str(n.label, id),
      step: num(n.step, 0),
      state: str(n.state),
      slice: str(n.slice),
      samples: numOrNull(n.samples),
      budget: numOrNull(n.budget),
      merged_from: Array.isArray(n.merged_from) ? n.merged_from.map(idOf).filter(Boolean) : [],
    });
  }
  return out;
}

/** `compare`: null until the first comparison; rows are padded or cut to the columns. */
export function normalizeCompare(value: unknown): CompareTable | null {
  const v = loose<C.CompareTrait>(value);
  if (!Array.isArray(v.columns) || !Array.isArray(v.rows)) return null;
  const columns = v.columns.slice(1).map((c) => str(c, String(c)));
  const rows: CompareTable["rows"] = [];
  for (const r of v.rows) {
    if (!Array.isArray(r) || r.length === 0) continue;
    const model = idOf(r[0]);
    if (!model) continue;
    rows.push({ model, values: columns.map((_, i) => numOrNull(r[i + 1])) });
  }
  return { columns, rows };
}

/** `health`: null until the first check; an unknown status reads as "warn". */
export function normalizeHealth(value: unknown): Health | null {
  if (!isObject(value)) return null;
  const v = loose<C.HealthTrait>(value);
  const results = (Array.isArray(v.results) ? v.results : []).filter(isObject).map((raw) => loose<C.HealthResult>(raw)).map((r) => ({
    check: str(r.check, "check"),
    status: r.status === "pass" || r.status === "fail" ? r.status : ("warn" as HealthStatus),
    evidence: typeof r.evidence === "string" ? r.evidence : r.evidence == null ? "" : JSON.stringify(r.evidence),
    explanation: str(r.explanation),
  }));
  return { step: numOrNull(v.step), time: numOrNull(v.time), results };
}
