// Generated from onthefly_nb/dashboard/contract.py by `make contract`. Do not edit: change the
// contract and regenerate (tests/dashboard/test_contract.py fails while the two differ).

export const PROTOCOL_VERSION = 1;
export const MAX_STEPS = 10000000;
export const MAX_SELECTION = 50000000;
export const MAX_MARKERS = 2000;
export const MAX_SCALAR_POINTS = 300;
export const TRAIT_NAMES = ["run", "curve", "val_curve", "events", "markers", "clusters", "histogram", "points", "selection", "plans", "lineage", "health", "compare", "scalars", "output", "hyperparameters", "overlays"] as const;
export const RUN_STATES = ["idle", "running", "paused", "stopping", "finished", "stopped", "failed"] as const;
export const COMMAND_NAMES = ["pause", "resume", "stop", "step", "validate", "test", "health", "compare", "determinism", "export"] as const;
export const EVENT_KINDS = ["started", "paused", "resumed", "stopping", "finished", "stopped", "failed", "interrupted", "superseded", "epoch_end", "validation", "test", "clustered", "selected", "health", "determinism", "lr_changed", "clipping", "reweighted", "plan_proposed", "plan_approved", "plan_rejected", "plan_executed", "plan_failed", "plan_expired", "rejected_message", "command_failed", "forked", "fork_trained", "merged", "merge_committed", "merge_discarded", "gated", "exported", "export_failed", "imported", "per_sample_off", "amp_overflow", "nonfinite_skipped", "hyperparameters"] as const;
export const PLAN_KINDS = ["lower_lr", "clip_gradients", "validate_now", "health_check", "fork", "reweight", "merge", "commit_merge"] as const;
export const PLAN_STATUSES = ["proposed", "approved", "rejected", "executed", "failed", "expired"] as const;
export const CURVE_COLUMNS = ["step", "p5", "p25", "p50", "p75", "p95", "mean"] as const;
export const LINEAGE_KINDS = ["run", "fork", "baseline", "merge"] as const;
export const CLUSTER_COLORS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"] as const;
export const MARKER_GROUPS = {"control": ["paused", "resumed", "stopped", "interrupted"], "changes": ["plan_executed", "lr_changed", "clipping", "reweighted", "hyperparameters"], "experts": ["forked", "fork_trained", "merged", "merge_committed", "gated"], "checks": ["health", "determinism", "test"], "faults": ["nonfinite_skipped", "amp_overflow", "failed"]} as const;

export type TraitName = (typeof TRAIT_NAMES)[number];
export type RunState = (typeof RUN_STATES)[number];
export type CommandName = (typeof COMMAND_NAMES)[number];
export type EventKind = (typeof EVENT_KINDS)[number];
export type PlanKind = (typeof PLAN_KINDS)[number];
export type PlanStatus = (typeof PLAN_STATUSES)[number];
export type CurveColumn = (typeof CURVE_COLUMNS)[number];
export type LineageKind = (typeof LINEAGE_KINDS)[number];

export interface EvalResult {
  step: number;
  loss: number | null;
  accuracy: number | null;
}

export interface RunTrait {
  project: string;
  run_name: string;
  state: RunState;
  step: number;
  epoch: number;
  max_epochs: number | null;
  steps_per_epoch: number;
  total_steps: number | null;
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
  deterministic: boolean;
  per_sample_off: string | null;
}

export interface CurveTrait {
  n: number;
  columns: CurveColumn[];
  data: DataView;
}

export interface RunEvent {
  seq: number;
  time: number;
  step: number;
  kind: EventKind;
  [key: string]: unknown;
}

export interface ClusterRow {
  cluster: number;
  size: number;
  mean_loss: number | null;
  loss_vs_median: number | null;
  top_labels: string;
  top_predictions: string;
}

export interface Quantiles {
  p1?: number | null;
  p5?: number | null;
  p25?: number | null;
  p50?: number | null;
  p75?: number | null;
  p95?: number | null;
  p99?: number | null;
  max?: number | null;
  mean?: number | null;
}

export interface HistogramTrait {
  edges: number[];
  counts: number[];
  quantiles: Quantiles;
}

export interface PointsTrait {
  version: number;
  step: number;
  source: string;
  n: number;
  x: DataView;
  y: DataView;
  loss: DataView;
  cluster: DataView;
  index: DataView;
}

export interface SelectionTrait {
  version: number;
  n: number;
  index: DataView;
}

export interface ParamSpec {
  label: string;
  min: number;
  max: number;
  step: number;
}

export interface Plan {
  id: string;
  kind: PlanKind;
  title: string;
  evidence: string;
  step: number;
  params: Record<string, number>;
  param_specs: Record<string, ParamSpec>;
  status: PlanStatus;
  result: string | null;
  expires?: number | null;
}

export interface LineageNode {
  id: string;
  parent: string | null;
  kind: LineageKind;
  label: string;
  step: number;
  state: string;
  slice?: string;
  samples?: number;
  budget?: number;
  merged_from?: string[];
}

export interface HealthResult {
  check: string;
  status: "pass" | "warn" | "fail";
  evidence: string;
  explanation: string;
}

export interface HealthTrait {
  step: number;
  time: number;
  results: HealthResult[];
}

export interface CompareTrait {
  version: number;
  columns: string[];
  rows: ((string | (number | null))[])[];
}

export interface ScalarSeries {
  name: string;
  group: "measured" | "logged";
  points: [number, number][];
}

export interface OutputLine {
  time: number;
  stream: "stdout" | "stderr";
  text: string;
}

export interface HyperparameterGroup {
  lr: number | null;
  weight_decay?: number | null;
  momentum?: number | null;
  beta1?: number | null;
  beta2?: number | null;
}

export interface HyperparametersTrait {
  groups: HyperparameterGroup[];
  grad_clip_norm: number | null;
}

export interface Overlay {
  name: string;
  points: [number, number][];
}

export interface ChannelTrait {
  target: string;
  key: string;
}

export interface CommandMessage {
  type: "command";
  name: CommandName;
  n?: number;
}

export interface SelectMessage {
  type: "select";
  n: number;
}

export interface PlanMessage {
  type: "plan";
  id: string;
  decision: "approve" | "reject";
  params?: Record<string, number>;
}

export interface OverlayMessage {
  type: "overlay";
  path: string;
}

export interface HyperparametersMessage {
  type: "hyperparameters";
  values: Record<string, number>;
  group?: number;
}

export interface ErrorReply {
  type: "error";
  protocol: number;
  reason: string;
}

export interface AliveMessage {
  type: "alive";
  protocol: number;
}

/** Every trait the dashboard reads, with its type. */
export interface Traits {
  run: RunTrait;
  curve: CurveTrait;
  val_curve: [number, number][];
  events: RunEvent[];
  markers: RunEvent[];
  clusters: ClusterRow[];
  histogram: HistogramTrait | null;
  points: PointsTrait | null;
  selection: SelectionTrait;
  plans: Plan[];
  lineage: LineageNode[];
  health: HealthTrait | null;
  compare: CompareTrait | null;
  scalars: ScalarSeries[];
  output: OutputLine[];
  hyperparameters: HyperparametersTrait | null;
  overlays: Overlay[];
}

/** The anywidget's own traits. */
export interface WidgetTraits {
  channel: ChannelTrait;
}

/** Every message the dashboard sends. */
export type DashboardMessage = CommandMessage | SelectMessage | PlanMessage | OverlayMessage | HyperparametersMessage;
