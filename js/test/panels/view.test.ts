import { describe, expect, it } from "vitest";
import { planMessage } from "../../model/messages";
import type { Plan } from "../../model/types";
import { enabledCommands } from "../../panels/controls";
import { histogramLayout, isLogSpaced } from "../../panels/histogram/chart";
import { checkParam, orderPlans } from "../../panels/plans";

describe("histogram layout", () => {
  it("detects log-spaced edges", () => {
    expect(isLogSpaced([0.01, 0.1, 1, 10])).toBe(true);
    expect(isLogSpaced([0, 1, 2, 3])).toBe(false);
    expect(isLogSpaced([1, 2, 3, 4])).toBe(false);
  });

  it("places bars, marks the tail and stacks overlapping labels", () => {
    const L = histogramLayout(
      { edges: [0, 1, 2, 3, 4], counts: [5, 10, 2, 1], quantiles: { p50: 1.2, p95: 3, p99: 3.1 } },
      400,
      200,
    );
    expect(L.bars).toHaveLength(4);
    expect(L.bars.map((b) => b.tail)).toEqual([false, false, false, true]);
    expect(L.bars[1]!.h).toBeGreaterThan(L.bars[0]!.h);
    expect(L.marks.map((m) => m.key)).toEqual(["p50", "p95", "p99"]);
    const [p50, p95, p99] = L.marks;
    expect(p50!.x).toBeLessThan(p95!.x);
    expect(p99!.row).toBeGreaterThan(p95!.row); // p95 and p99 are 0.1 apart: their labels would collide
    expect(p95!.text).toBe("p95 3");
  });
});

describe("plans", () => {
  const plan: Plan = {
    id: "plan-3", kind: "lower_lr", title: "Lower", evidence: "", step: 10, params: { factor: 0.5 },
    param_specs: { factor: { label: "factor", min: 0.1, max: 1, step: 0.05 } }, status: "proposed", result: "", expires: 1010,
  };

  it("validate parameters against their spec", () => {
    const spec = plan.param_specs.factor!;
    expect(checkParam("0.25", spec)).toEqual({ ok: true, value: 0.25 });
    expect(checkParam("", spec).ok).toBe(false);
    expect(checkParam("abc", spec).ok).toBe(false);
    expect(checkParam("0.05", spec)).toEqual({ ok: false, reason: "at least 0.1" });
    expect(checkParam("2", spec)).toEqual({ ok: false, reason: "at most 1" });
  });

  it("build decision messages", () => {
    expect(planMessage(plan, "approve", { factor: 0.25 })).toEqual({ type: "plan", id: "plan-3", decision: "approve", params: { factor: 0.25 } });
    expect(planMessage(plan, "reject", {})).toEqual({ type: "plan", id: "plan-3", decision: "reject" });
    const bare = { ...plan, params: {}, param_specs: {} };
    expect(planMessage(bare, "approve", {})).toEqual({ type: "plan", id: "plan-3", decision: "approve" });
  });

  it("list proposed plans first, then the decided ones newest first", () => {
    const mk = (n: number, status: Plan["status"]): Plan => ({ ...plan, id: `plan-${n}`, status });
    expect(orderPlans([mk(1, "executed"), mk(2, "proposed"), mk(3, "rejected"), mk(4, "proposed")]).map((p) => p.id))
      .toEqual(["plan-2", "plan-4", "plan-3", "plan-1"]);
  });
});

describe("controls", () => {
  it("enable commands by run state", () => {
    expect(enabledCommands("running")).toMatchObject({ pause: true, resume: false, test: true, health: true });
    expect(enabledCommands("paused")).toMatchObject({ pause: false, resume: true, step: true });
    // after the run: evaluations, the health and determinism checks and the session export
    const finished = Object.entries(enabledCommands("finished")).filter(([, on]) => on).map(([c]) => c);
    expect(finished.sort()).toEqual(["determinism", "export", "health", "test", "validate"]);
  });
});
