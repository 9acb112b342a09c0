// The front end reads what the Python contract declares (js/model/contract.ts is generated from
// onthefly_nb/dashboard/contract.py): the three places where hand-written copies had drifted.
import { describe, expect, it } from "vitest";
import { EVENT_KINDS, MARKER_GROUPS } from "../../model/contract";
import { normalizeEvents, normalizeRun } from "../../model/normalize";
import { GROUP_LABELS, groupsPresent, toMarkers } from "../../panels/loss/markers";
import { progressPercent } from "../../panels/progress";

describe("the contract, as the panels read it", () => {
  it("bounds the progress bar by total_steps (a run stopped by max_steps), not epochs x steps", () => {
    const run = normalizeRun({ state: "running", step: 20, max_epochs: 3, steps_per_epoch: 100, total_steps: 40 });
    expect(progressPercent(run)).toBe(50);
    expect(progressPercent(normalizeRun({ state: "finished", step: 40, total_steps: 40 }))).toBe(100);
    expect(progressPercent(normalizeRun({ state: "idle", max_epochs: 3, steps_per_epoch: 100 }))).toBeNull();
  });

  it("draws a marker with a legend entry for every marker kind, and passing checks quietly", () => {
    const kinds = Object.values(MARKER_GROUPS).flat();
    const events = normalizeEvents([
      ...kinds.map((kind, seq) => ({ seq, time: 0, step: seq, kind })),
      { seq: 99, time: 0, step: 99, kind: "epoch_end" },
      { seq: 100, time: 0, step: 100, kind: "health", status: "pass" },
      { seq: 101, time: 0, step: 101, kind: "health", status: "fail" },
      { seq: 102, time: 0, step: 102, kind: "determinism", passed: true },
    ]);
    const markers = toMarkers(events);
    expect(markers.map((m) => m.kind)).toEqual([...kinds, "health", "health", "determinism"]);
    for (const kind of kinds) expect(EVENT_KINDS).toContain(kind);
    expect(groupsPresent(markers)).toEqual(Object.keys(MARKER_GROUPS));
    for (const group of groupsPresent(markers)) expect(GROUP_LABELS[group]).toBeTruthy();
    expect(markers.filter((m) => m.quiet).map((m) => m.step)).toEqual([100, 102]);
    expect(markers.find((m) => m.step === 101)?.status).toBe("fail");
  });
});
