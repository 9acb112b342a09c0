import { describe, expect, it } from "vitest";
import {
  normalizeClusters,
  normalizeCompare,
  normalizeEvents,
  normalizeHealth,
  normalizeHistogram,
  normalizeLineage,
  normalizePlans,
  normalizeRun,
  normalizeValCurve,
} from "../../model/normalize";

const GARBAGE = [undefined, null, 0, "x", [], {}, [null, 1, "a"], { results: 5, edges: "x" }];

describe("normalisers", () => {
  it("never throw on missing, null or partial values", () => {
    for (const v of GARBAGE) {
      expect(() => {
        normalizeRun(v);
        normalizeValCurve(v);
        normalizeEvents(v);
        normalizeClusters(v);
        normalizeHistogram(v);
        normalizePlans(v);
        normalizeLineage(v);
        normalizeHealth(v);
        normalizeCompare(v);
      }).not.toThrow();
    }
  });

  it("read the run, including the learning rate", () => {
    const r = normalizeRun({ state: "paused", step: 5, lr: 0.001, max_epochs: null, total_steps: 40, val: { loss: "x" } });
    expect(r).toMatchObject({ state: "paused", step: 5, lr: 0.001, max_epochs: null, total_steps: 40, val: null, project: "" });
    expect(normalizeRun({ state: "exploded", lr: Number.NaN })).toMatchObject({ state: "idle", lr: null });
  });

  it("keep only events of a kind the contract declares", () => {
    const events = normalizeEvents([{ kind: "paused", step: 3 }, { kind: "fork", step: 4 }, { kind: "forked", step: 5 }]);
    expect(events.map((e) => e.kind)).toEqual(["paused", "forked"]);
  });

  it("read a histogram and reject inconsistent edges", () => {
    const h = normalizeHistogram({ edges: [0, 1, 2], counts: [3, -1, 7], quantiles: { p50: 0.5, p99: "x" } })!;
    expect(h.counts).toEqual([3, 0]);
    expect(h.quantiles).toEqual({ p50: 0.5 });
    expect(normalizeHistogram({ edges: [0, 2, 1], counts: [1, 1] })).toBeNull();
    expect(normalizeHistogram({ edges: [0], counts: [] })).toBeNull();
  });

  it("read plans with their specs and keep the id as sent; drop those the contract does not describe", () => {
    const plans = normalizePlans([
      { id: "plan-7", kind: "lower_lr", title: "Lower", params: { factor: 0.5, bad: "x" }, param_specs: { factor: { label: "factor", min: 0.1, max: 1 } }, status: "proposed", expires: 1200 },
      { id: "p2", kind: "validate_now", status: 3, result: null, expires: "soon" },
      { kind: "fork" },
      { id: 8, kind: "fork" },
      { id: "p9", kind: "reticulate" },
    ]);
    expect(plans.map((p) => p.id)).toEqual(["plan-7", "p2"]);
    const [a, b] = plans;
    expect(a!.id).toBe("plan-7");
    expect(a!.params).toEqual({ factor: 0.5 });
    expect([a!.expires, b!.expires]).toEqual([1200, null]);
    expect(a!.param_specs.factor).toEqual({ label: "factor", min: 0.1, max: 1, step: null });
    expect(b).toMatchObject({ id: "p2", status: "failed", title: "validate_now", params: {}, result: "" });
    expect(normalizePlans([{ id: "p3", kind: "health_check", status: "expired" }])[0]!.status).toBe("expired");
  });

  it("read lineage and health", () => {
    expect(normalizeLineage([{ id: 1, parent: null, kind: "fork", label: "f" }, { id: "" }, { id: "x", kind: "?" }])).toEqual([
      { id: "1", parent: null, kind: "fork", label: "f", step: 0, state: "", slice: "", samples: null, budget: null, merged_from: [] },
      { id: "x", parent: null, kind: "run", label: "x", step: 0, state: "", slice: "", samples: null, budget: null, merged_from: [] },
    ]);
    expect(normalizeHealth(null)).toBeNull();
    const h = normalizeHealth({ step: 3, results: [{ check: "c", status: "fail", evidence: { n: 2 } }, { status: "?" }, 1] })!;
    expect(h.results).toEqual([
      { check: "c", status: "fail", evidence: '{"n":2}', explanation: "" },
      { check: "check", status: "warn", evidence: "", explanation: "" },
    ]);
  });
});
