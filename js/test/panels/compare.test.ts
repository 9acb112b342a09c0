import { describe, expect, it } from "vitest";
import { normalizeCompare, normalizeLineage } from "../../model/normalize";
import type { CompareTable } from "../../model/types";
import { bestRows, fmtDelta, fmtMetric, groupColumns, splitColumn, targetParts } from "../../panels/compare/table";
import { lineageDetail, lineageName, lineageStep } from "../../panels/lineage";

const COLUMNS = ["model", "slice run-fork1 loss", "slice run-fork1 accuracy", "validation loss", "validation accuracy"];

describe("compare trait", () => {
  it("normalises rows to the columns and drops rows without a model", () => {
    const t = normalizeCompare({
      columns: COLUMNS,
      rows: [["run", 0.51, 0.8, 0.3, 0.9], ["run-fork1", 0.2, null, "x", 0.85, 99], [], [null, 1], "junk"],
    })!;
    expect(t.columns).toEqual(COLUMNS.slice(1));
    expect(t.rows).toEqual([
      { model: "run", values: [0.51, 0.8, 0.3, 0.9] },
      { model: "run-fork1", values: [0.2, null, null, 0.85] },
    ]);
    expect(normalizeCompare({ columns: ["model"], rows: [["run"]] })).toEqual({ columns: [], rows: [{ model: "run", values: [] }] });
    for (const v of [undefined, null, 3, "x", [], { columns: 1, rows: [] }, { columns: [], rows: {} }]) {
      expect(normalizeCompare(v)).toBeNull();
    }
  });

  it("splits column names into target and metric", () => {
    expect(splitColumn("slice run-fork1 loss", 0)).toEqual({ index: 0, name: "slice run-fork1 loss", target: "slice run-fork1", metric: "loss", label: "loss" });
    expect(splitColumn("validation accuracy", 3)).toMatchObject({ target: "validation", metric: "accuracy", label: "acc" });
    expect(splitColumn("loss", 1)).toMatchObject({ target: "", metric: "loss", label: "loss" });
    expect(splitColumn("params", 2)).toMatchObject({ target: "", metric: "other", label: "params" });
    expect(targetParts("slice run-fork1")).toEqual(["slice", "run-fork1"]);
    expect(targetParts("validation")).toEqual(["", "validation"]);
  });

  it("groups columns per target in order of appearance", () => {
    const groups = groupColumns(["slice a loss", "validation loss", "slice a accuracy", "params", "validation accuracy"]);
    expect(groups.map((g) => [g.target, g.columns.map((c) => c.index)])).toEqual([
      ["slice a", [0, 2]],
      ["validation", [1, 4]],
      ["", [3]],
    ]);
  });

  const table: CompareTable = {
    columns: COLUMNS.slice(1),
    rows: [
      { model: "run", values: [0.9, 0.6, 0.3, 0.9] },
      { model: "run-fork1", values: [0.2, 0.95, 0.5, 0.8] },
      { model: "run-merge1", values: [0.2, 0.7, null, 0.9] },
    ],
  };

  it("finds the lowest loss and the highest accuracy of each column, ties included", () => {
    const best = bestRows(table);
    expect(best.map((s) => [...s].sort())).toEqual([[1, 2], [1], [0], [0, 2]]);
  });

  it("highlights nothing with fewer than two values or all equal, and skips the given models", () => {
    expect(bestRows({ columns: ["validation loss"], rows: [{ model: "run", values: [0.3] }] })[0]!.size).toBe(0);
    expect(bestRows({ columns: ["validation loss"], rows: [{ model: "a", values: [0.3] }, { model: "b", values: [0.3] }] })[0]!.size).toBe(0);
    expect(bestRows({ columns: ["params"], rows: [{ model: "a", values: [1] }, { model: "b", values: [2] }] })[0]!.size).toBe(0);
    const best = bestRows(table, new Set(["run-merge1"]));
    expect([...best[0]!]).toEqual([1]);
    expect([...best[3]!]).toEqual([0]);
  });

  it("formats losses, accuracies and differences", () => {
    expect(fmtMetric("loss", 0.51234)).toBe("0.5123");
    expect(fmtMetric("accuracy", 0.8)).toBe("80.0%");
    expect(fmtMetric("accuracy", null)).toBe("—");
    expect(fmtDelta("loss", 0.2, 0.9)).toBe("\u22120.7");
    expect(fmtDelta("accuracy", 0.95, 0.6)).toBe("+35.0 pts");
    expect(fmtDelta("loss", 0.5, 0.5)).toBe("±0");
  });
});

describe("lineage nodes", () => {
  const [run, fork, base, merge] = normalizeLineage([
    { id: "run", parent: null, kind: "run", label: "run", step: 3000, state: "paused" },
    { id: "run-fork1", parent: "run", kind: "fork", label: "run-fork1", step: 1500, state: "trained", slice: "cluster 3 (step 1500)", samples: 180, budget: 60 },
    { id: "run-baseline2", parent: "run", kind: "baseline", label: "run-baseline2", step: 1500, state: "training", slice: "all samples", samples: 20000, budget: 1 },
    { id: "run-merge1", parent: "run", kind: "merge", label: "swa merge", step: 1560, state: "discarded", merged_from: ["run-fork1", 7, null] },
  ]);

  it("keep the fork, baseline and merge fields", () => {
    expect(fork).toMatchObject({ kind: "fork", slice: "cluster 3 (step 1500)", samples: 180, budget: 60, merged_from: [] });
    expect(base!.kind).toBe("baseline");
    expect(merge).toMatchObject({ kind: "merge", state: "discarded", merged_from: ["run-fork1", "7"] });
  });

  it("describe each node", () => {
    expect([run, fork, base, merge].map((n) => lineageStep(n!))).toEqual(["step 3000", "forked at step 1500", "forked at step 1500", "at step 1560"]);
    expect(lineageDetail(run!)).toBe("");
    expect(lineageDetail(fork!)).toBe("cluster 3 (step 1500) · 180 samples · 60 steps");
    expect(lineageDetail(base!)).toBe("all samples · 20k samples · 1 step");
    expect(lineageDetail(merge!)).toBe("swa merge · merged from run-fork1, 7");
    expect(lineageName(merge!)).toBe("run-merge1");
    expect(lineageName(fork!)).toBe("run-fork1");
  });
});
