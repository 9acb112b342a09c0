import { describe, expect, it } from "vitest";
import { CURVE_COLUMNS, type Curve, type CurveColumn } from "../../model/curve";
import { lastSteps, smoothed, stepRange, zoomOf } from "../../panels/loss/view";

function curve(steps: number[], values: number[]): Curve {
  const cols = {} as Record<CurveColumn, Float32Array>;
  for (const c of CURVE_COLUMNS) cols[c] = Float32Array.from(c === "step" ? steps : values);
  return { n: steps.length, cols };
}

describe("loss chart view", () => {
  it("keep the rows of the last N steps", () => {
    const c = curve([10, 20, 30, 40, 50], [5, 4, 3, 2, 1]);
    expect(Array.from(lastSteps(c, 25).cols.step)).toEqual([30, 40, 50]);
    expect(lastSteps(c, 0)).toBe(c);
    expect(lastSteps(c, 1000)).toBe(c);
  });

  it("smooth as TensorBoard does: a debiased EMA that starts at the first value", () => {
    const c = curve([1, 2, 3], [1, 3, Number.NaN]);
    const s = smoothed(c, 0.5);
    expect(s.cols.p50[0]).toBeCloseTo(1);
    expect(s.cols.p50[1]).toBeCloseTo((0.5 * 0.5 + 0.5 * 3) / (1 - 0.25)); // (0.25 + 1.5) / 0.75
    expect(Number.isNaN(s.cols.p50[2]!)).toBe(true);
    expect(s.cols.step).toBe(c.cols.step);
    expect(smoothed(c, 0)).toBe(c);
  });

  it("zoom to the rows of a step range, and take a drag's ends in either order", () => {
    const c = curve([10, 20, 30, 40, 50], [5, 4, 3, 2, 1]);
    expect(Array.from(stepRange(c, 15, 40).cols.step)).toEqual([20, 30, 40]);
    expect(Array.from(stepRange(c, 15, 40).cols.p50)).toEqual([4, 3, 2]);
    expect(stepRange(c, 0, 100)).toBe(c);
    expect(stepRange(c, 41, 49).n).toBe(0);
    expect(zoomOf(40, 15, 2)).toEqual([15, 40]);
    expect(zoomOf(15, 16, 2)).toBeNull();
  });
});
