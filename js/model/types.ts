// The traits Python syncs to the dashboard (onthefly_nb, see docs/protocol.md) and the
// typed values the normalisers (normalize.ts) make of them. Binary traits have their own
// decoders: curve.ts (`curve`) and points.ts (`points`, `selection`).

/** Every trait the dashboard reads. */
export const TRAIT_NAMES = [
  "run", "curve", "val_curve", "events", "clusters", "histogram",
  "points", "selection", "plans", "lineage", "compare", "health",
] as const;
export type TraitName = (typeof TRAIT_NAMES)[number];

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
  lr: number | null;
  /** torch.use_deterministic_algorithms is on and the seeds are fixed (false when the trait omits it). */
  deterministic: boolean;
}

export interface RunEvent {
  seq: number;
  time: number;
  step: number;
  kind: string;
  [extra: string]: unknown;
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

/** `histogram`: per-sample losses of the latest pass, binned. */
export interface Histogram {
  edges: number[];
  counts: number[];
  quantiles: Partial<Record<"p1" | "p5" | "p25" | "p50" | "p75" | "p95" | "p99" | "max" | "mean", number>>;
}

/** "proposed", "approved", "rejected", "executed", "failed", or a newer status shown as is. */
export type PlanStatus = string;

export interface ParamSpec {
  label: string;
  min: number | null;
  max: number | null;
  step: number | null;
}

export interface Plan {
  /** As Python sent it (decisions must echo it unchanged). */
  id: string | number;
  kind: string;
  title: string;
  evidence: string;
  step: number | null;
  params: Record<string, number>;
  param_specs: Record<string, ParamSpec>;
  status: PlanStatus;
  result: string;
}

export type LineageKind = "run" | "fork" | "baseline" | "merge";

export interface LineageNode {
  id: string;
  parent: string | null;
  kind: LineageKind;
  label: string;
  step: number | null;
  /** run: its status; fork and baseline: training, trained, merged; merge: candidate, committed, discarded */
  state: string;
  /** fork and baseline: how the slice was chosen, its size and the training budget in steps */
  slice: string;
  samples: number | null;
  budget: number | null;
  /** merge: the experts averaged with the run */
  merged_from: string[];
}

/** `compare`: one row per model (the run, its experts, merge candidates), one value per column. */
export interface CompareTable {
  /** The value columns, without the leading "model" column: "slice <expert> loss", "validation accuracy", ... */
  columns: string[];
  rows: Array<{ model: string; values: Array<number | null> }>;
}

export type HealthStatus = "pass" | "warn" | "fail";

export interface HealthResult {
  check: string;
  status: HealthStatus;
  evidence: string;
  explanation: string;
}

export interface Health {
  step: number | null;
  time: number | null;
  results: HealthResult[];
}
