// The trait types the dashboard works with, derived from the contract Python declares
// (onthefly_nb/dashboard/contract.py, generated into contract.ts). Where the normalisers
// (normalize.ts) make a value friendlier to draw (nulls for missing numbers, the compare
// table split into columns and rows), the type says so here, still in the contract's terms.
// Binary traits have their own decoders: curve.ts (`curve`) and points.ts (`points`, `selection`).

import type * as C from "./contract";

export {
  COMMAND_NAMES, EVENT_KINDS, LINEAGE_KINDS, PLAN_KINDS, PLAN_STATUSES, RUN_STATES, TRAIT_NAMES,
} from "./contract";
export type {
  ClusterRow, CommandName, EventKind, HealthResult, LineageKind, PlanKind, PlanStatus, RunEvent, RunState, TraitName,
} from "./contract";

/** A trait value as it may arrive: any of the contract's fields, of any type (the normalisers check each). */
export type Loose<T> = Partial<Record<keyof T, unknown>>;

/** A validation or test result with a loss (results without one are not shown). */
export type EvalResult = C.EvalResult & { loss: number };

/** `run` as the contract declares it, its validation and test results only when they have a loss. */
export type RunInfo = Omit<C.RunTrait, "val" | "test"> & { val: EvalResult | null; test: EvalResult | null };

/** `histogram`, with only the quantiles that are finite. */
export type Histogram = Omit<C.HistogramTrait, "quantiles"> & {
  quantiles: { [K in keyof C.Quantiles]?: number };
};

/** A plan parameter's bounds; null where a bound is missing. */
export type ParamSpec = Omit<C.ParamSpec, "min" | "max" | "step"> & {
  min: number | null;
  max: number | null;
  step: number | null;
};

/** A plan card; `result` is "" until there is one. */
export type Plan = Omit<C.Plan, "param_specs" | "result"> & {
  param_specs: Record<string, ParamSpec>;
  result: string;
};

/** A lineage node with every optional field filled (null or empty where Python sent none). */
export type LineageNode = Omit<C.LineageNode, "slice" | "samples" | "budget" | "merged_from"> & {
  /** fork and baseline: how the slice was chosen, its size and the training budget in steps */
  slice: string;
  samples: number | null;
  budget: number | null;
  /** merge: the experts averaged with the run */
  merged_from: string[];
};

/** `compare`: one row per model (the run, its experts, merge candidates), one value per column. */
export interface CompareTable {
  /** The value columns, without the leading "model" column: "slice <expert> loss", "validation accuracy", ... */
  columns: string[];
  rows: Array<{ model: string; values: Array<number | null> }>;
}

export type HealthStatus = C.HealthResult["status"];

/** `health`, with null step and time when missing. */
export type Health = Omit<C.HealthTrait, "step" | "time"> & { step: number | null; time: number | null };
