// The front end reads what the Python contract declares (js/model/contract.ts is generated from
// onthefly_nb/dashboard/contract.py): the three places where hand-written copies had drifted.
import { describe, expect, it } from "vitest";
import { EVENT_KINDS } from "../../model/contract";
import { normalizeRun } from "../../model/normalize";
import { MARKER_KINDS } from "../../panels/loss";
import { progressPercent } from "../../panels/progress";

describe("the contract, as the panels read it", () => {
  it("bounds the progress bar by total_steps (a run stopped by max_steps), not epochs x steps", () => {
    const run = normalizeRun({ state: "running", step: 20, max_epochs: 3, steps_per_epoch: 100, total_steps: 40 });
    expect(progressPercent(run)).toBe(50);
    expect(progressPercent(normalizeRun({ state: "finished", step: 40, total_steps: 40 }))).toBe(100);
    expect(progressPercent(normalizeRun({ state: "idle", max_epochs: 3, steps_per_epoch: 100 }))).toBeNull();
  });

  it("draws markers only for event kinds Python emits", () => {
    for (const kind of MARKER_KINDS) expect(EVENT_KINDS).toContain(kind);
    expect(MARKER_KINDS.has("forked") && MARKER_KINDS.has("merged")).toBe(true);
  });
});
