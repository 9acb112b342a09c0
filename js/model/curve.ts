// Decoding of the `curve` trait: {n, columns, data} where data is float32
// little-endian, row-major n x 7 with columns step,p5,p25,p50,p75,p95,mean.

import { toFloat32 } from "./binary";

export const CURVE_COLUMNS = ["step", "p5", "p25", "p50", "p75", "p95", "mean"] as const;
export type CurveColumn = (typeof CURVE_COLUMNS)[number];

export interface Curve {
  /** Number of rows. */
  readonly n: number;
  /** One array of length n per column. */
  readonly cols: Readonly<Record<CurveColumn, Float32Array>>;
}

function emptyCols(n: number): Record<CurveColumn, Float32Array> {
  const cols = {} as Record<CurveColumn, Float32Array>;
  for (const c of CURVE_COLUMNS) cols[c] = new Float32Array(n);
  return cols;
}

export const EMPTY_CURVE: Curve = { n: 0, cols: emptyCols(0) };

/** Flat float32 values; nested rows (`[[step, p5, ...], ...]`) are flattened. */
function curveData(data: unknown): Float32Array | null {
  if (Array.isArray(data) && data.length > 0 && Array.isArray(data[0])) {
    const flat: number[] = [];
    for (const row of data) {
      if (!Array.isArray(row)) return null;
      for (const x of row) flat.push(typeof x === "number" ? x : Number.NaN);
    }
    return Float32Array.from(flat);
  }
  return toFloat32(data);
}

/** Decodes the `curve` trait; anything malformed becomes an empty curve. */
export function decodeCurve(value: unknown): Curve {
  if (typeof value !== "object" || value === null) return EMPTY_CURVE;
  const v = value as { n?: unknown; columns?: unknown; data?: unknown };
  const flat = curveData(v.data);
  const names: string[] = Array.isArray(v.columns) && v.columns.length > 0
    ? v.columns.map(String)
    : [...CURVE_COLUMNS];
  const width = names.length;
  if (!flat || width === 0) return EMPTY_CURVE;
  const maxRows = Math.floor(flat.length / width);
  const n = typeof v.n === "number" && Number.isFinite(v.n) ? Math.max(0, Math.min(Math.floor(v.n), maxRows)) : maxRows;
  if (n === 0) return EMPTY_CURVE;

  const cols = emptyCols(n);
  CURVE_COLUMNS.forEach((name, fallbackIndex) => {
    let j = names.indexOf(name);
    if (j < 0) j = v.columns === undefined ? fallbackIndex : -1;
    const dst = cols[name];
    if (j < 0) {
      dst.fill(Number.NaN);
      return;
    }
    for (let i = 0; i < n; i++) dst[i] = flat[i * width + j]!;
  });
  return { n, cols };
}

/** Index of the row whose step is nearest to `step` (steps ascending). */
export function nearestRow(curve: Curve, step: number): number {
  const s = curve.cols.step;
  const n = curve.n;
  if (n === 0) return -1;
  let lo = 0;
  let hi = n - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (s[mid]! < step) lo = mid + 1;
    else hi = mid;
  }
  if (lo > 0 && Math.abs(s[lo - 1]! - step) <= Math.abs(s[lo]! - step)) return lo - 1;
  return lo;
}
