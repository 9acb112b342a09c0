// The run's events the loss chart draws (`markers` trait): each kind belongs to one legend group
// (contract.MARKER_GROUPS); a check that passed is drawn quietly, a warning or failure stands out.

import { MARKER_GROUPS } from "../../model/contract";
import { str } from "../../model/guards";
import type { RunEvent } from "../../model/types";
import { markerLabel } from "../../ui/event-text";

export type MarkerGroup = keyof typeof MARKER_GROUPS;

export interface Marker {
  step: number;
  kind: string;
  group: MarkerGroup;
  label: string;
  status: string; // a check's verdict: pass, warn or fail ("" for other kinds)
  quiet: boolean; // a passing check: a short tick on the axis rather than a line
}

/** Legend text of each group. */
export const GROUP_LABELS: Record<MarkerGroup, string> = {
  control: "pause/resume/stop",
  changes: "changes",
  experts: "forks & merges",
  checks: "checks",
  faults: "faults",
};

const GROUP_OF = new Map<string, MarkerGroup>(
  (Object.entries(MARKER_GROUPS) as Array<[MarkerGroup, readonly string[]]>).flatMap(([group, kinds]) =>
    kinds.map((kind) => [kind, group] as [string, MarkerGroup]),
  ),
);

/** A check's verdict from its event: health carries its worst status, determinism whether it passed. */
function verdict(e: RunEvent): string {
  if (e.kind === "health") return str(e.status);
  if (e.kind === "determinism") return e.passed === true ? "pass" : e.passed === false ? "fail" : "";
  return "";
}

/** The markers of ``events`` in their order; events of other kinds are left out. */
export function toMarkers(events: readonly RunEvent[]): Marker[] {
  const out: Marker[] = [];
  for (const e of events) {
    const group = GROUP_OF.get(e.kind);
    if (group === undefined) continue;
    const status = verdict(e);
    out.push({ step: e.step, kind: e.kind, group, label: markerLabel(e), status, quiet: status === "pass" });
  }
  return out;
}

/** The groups that have at least one marker, in legend order. */
export function groupsPresent(markers: readonly Marker[]): MarkerGroup[] {
  const present = new Set(markers.map((m) => m.group));
  return (Object.keys(MARKER_GROUPS) as MarkerGroup[]).filter((g) => present.has(g));
}
