// What the loss chart shows of the curve: the last N steps (or all of them, or the steps a zoom
// chose), smoothed by an exponential moving average as TensorBoard does (debiased, so the start
// is not pulled to 0).

import { CURVE_COLUMNS, type Curve, type CurveColumn } from "../../model/curve";

/** The windows the chart offers, in steps (0: the whole run). */
export const WINDOWS = [0, 100, 1_000, 10_000] as const;

/** The rows whose step is within the last ``steps`` steps of the curve (all of them for 0). */
export function lastSteps(curve: Curve, steps: number): Curve {
  if (steps <= 0 || curve.n === 0) return curve;
  const step = curve.cols.step;
  const from = step[curve.n - 1]! - steps;
  let start = 0;
  while (start < curve.n && !(step[start]! > from)) start++;
  return rows(curve, start, curve.n);
}

/** The rows whose step lies in [from, to] (a zoom). */
export function stepRange(curve: Curve, from: number, to: number): Curve {
  return rows(curve, ...within(curve.cols.step, curve.n, from, to));
}

/** [start, end) of the first ``n`` ascending ``steps`` that lie in [from, to]. */
function within(steps: Float32Array, n: number, from: number, to: number): [number, number] {
  let start = 0;
  while (start < n && steps[start]! < from) start++;
  let end = start;
  while (end < n && steps[end]! <= to) end++;
  return [start, end];
}

/** Rows [start, end) of the curve (the curve itself when that is all of it). */
function rows(curve: Curve, start: number, end: number): Curve {
  if (start === 0 && end === curve.n) return curve;
  const cols = {} as Record<CurveColumn, Float32Array>;
  for (const c of CURVE_COLUMNS) cols[c] = curve.cols[c].subarray(start, end);
  return { n: end - start, cols };
}

/** The zoom a drag from ``a`` to ``b`` (steps) asks for: null for a drag too short to mean one
 * (under ``minSteps``, about 4 px). */
export function zoomOf(a: number, b: number, minSteps: number): readonly [number, number] | null {
  const lo = Math.min(a, b);
  const hi = Math.max(a, b);
  return hi - lo >= minSteps && hi > lo ? [lo, hi] : null;
}

/** Each value column smoothed by a debiased EMA of ``weight`` (0: as recorded; TensorBoard's
 * slider); a non-finite value is kept as it is and leaves the average untouched. */
export function smoothed(curve: Curve, weight: number): Curve {
  if (!(weight > 0) || curve.n === 0) return curve;
  const w = Math.min(weight, 0.999);
  const cols = { step: curve.cols.step } as Record<CurveColumn, Float32Array>;
  for (const c of CURVE_COLUMNS) {
    if (c === "step") continue;
    const src = curve.cols[c];
    const out = new Float32Array(curve.n);
    let last = 0;
    let seen = 0;
    for (let i = 0; i < curve.n; i++) {
      const v = src[i]!;
      if (!Number.isFinite(v)) {
        out[i] = v;
        continue;
      }
      last = last * w + (1 - w) * v;
      seen++;
      out[i] = last / (1 - w ** seen);
    }
    cols[c] = out;
  }
  return { n: curve.n, cols };
}

/** The overlays' points with a step in [from, to] (the chart's window or zoom). */
export function overlaysIn<T extends { steps: Float32Array; median: Float32Array }>(
  overlays: readonly T[], from: number, to: number,
): T[] {
  return overlays.map((o) => {
    const [start, end] = within(o.steps, o.steps.length, from, to);
    return { ...o, steps: o.steps.subarray(start, end), median: o.median.subarray(start, end) };
  });
}
