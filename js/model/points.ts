// Decoding of the sample map traits: `points` (the 2-D projection) and `selection`
// (dataset indices chosen in any view).

import { toFloat32, toUint16, toUint32 } from "./binary";

/** Cluster id of points outside the clustered hard set. */
export const UNCLUSTERED = 65535;

export interface Points {
  version: number;
  step: number | null;
  source: string;
  n: number;
  x: Float32Array;
  y: Float32Array;
  loss: Float32Array;
  cluster: Uint16Array;
  /** Dataset index of each point. */
  index: Uint32Array;
}

export interface Selection {
  version: number;
  n: number;
  /** Dataset indices, sorted. */
  index: Uint32Array;
}

export const EMPTY_SELECTION: Selection = { version: 0, n: 0, index: new Uint32Array(0) };

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
const finite = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);

/** The `version` of a points value without decoding its arrays (-1 when absent). */
export function pointsVersion(v: unknown): number {
  return isObj(v) ? (finite(v.version) ?? -1) : -1;
}

/**
 * Decodes `points`; null when there is nothing to draw. `n` is clipped to the shortest of
 * x and y; a missing or short loss reads as NaN, cluster as unclustered, index as the point id.
 */
export function decodePoints(v: unknown): Points | null {
  if (!isObj(v)) return null;
  const x = toFloat32(v.x);
  const y = toFloat32(v.y);
  if (!x || !y) return null;
  const declared = finite(v.n);
  const n = Math.max(0, Math.min(declared === null ? Infinity : Math.floor(declared), x.length, y.length));
  if (n === 0) return null;
  const column = <T extends Float32Array | Uint16Array | Uint32Array>(
    data: T | null,
    make: (n: number) => T,
  ): T => {
    if (data && data.length >= n) return data.length === n ? data : (data.subarray(0, n) as T);
    const out = make(n);
    if (data) out.set(data);
    return out;
  };
  const loss = column(toFloat32(v.loss), (k) => new Float32Array(k).fill(Number.NaN));
  const cluster = column(toUint16(v.cluster), (k) => new Uint16Array(k).fill(UNCLUSTERED));
  const index = column(toUint32(v.index), (k) => {
    const out = new Uint32Array(k);
    for (let i = 0; i < k; i++) out[i] = i;
    return out;
  });
  return {
    version: finite(v.version) ?? 0,
    step: finite(v.step),
    source: typeof v.source === "string" ? v.source : "",
    n,
    x: x.length === n ? x : x.subarray(0, n),
    y: y.length === n ? y : y.subarray(0, n),
    loss,
    cluster,
    index,
  };
}

/** Decodes `selection`; anything malformed is the empty selection. */
export function decodeSelection(v: unknown): Selection {
  if (!isObj(v)) return EMPTY_SELECTION;
  const index = toUint32(v.index) ?? new Uint32Array(0);
  const declared = finite(v.n);
  const n = Math.max(0, Math.min(declared === null ? index.length : Math.floor(declared), index.length));
  return { version: finite(v.version) ?? 0, n, index: n === index.length ? index : index.subarray(0, n) };
}

/**
 * Normalised device coordinates for the scatterplot: the bounding box of the finite
 * points, centred and scaled (keeping the aspect ratio) so that its longer side spans
 * [-pad, pad]. Non-finite coordinates are parked far outside the view.
 */
export function fitToNdc(x: Float32Array, y: Float32Array, pad = 0.9): { x: Float32Array; y: Float32Array } {
  const n = Math.min(x.length, y.length);
  let x0 = Infinity;
  let x1 = -Infinity;
  let y0 = Infinity;
  let y1 = -Infinity;
  for (let i = 0; i < n; i++) {
    const a = x[i]!;
    const b = y[i]!;
    if (!Number.isFinite(a) || !Number.isFinite(b)) continue;
    if (a < x0) x0 = a;
    if (a > x1) x1 = a;
    if (b < y0) y0 = b;
    if (b > y1) y1 = b;
  }
  const ox = new Float32Array(n);
  const oy = new Float32Array(n);
  if (!(x1 >= x0)) return { x: ox.fill(1e6), y: oy.fill(1e6) };
  const cx = (x0 + x1) / 2;
  const cy = (y0 + y1) / 2;
  const span = Math.max(x1 - x0, y1 - y0);
  const s = span > 0 ? (2 * pad) / span : 1;
  for (let i = 0; i < n; i++) {
    const a = x[i]!;
    const b = y[i]!;
    const ok = Number.isFinite(a) && Number.isFinite(b);
    ox[i] = ok ? (a - cx) * s : 1e6;
    oy[i] = ok ? (b - cy) * s : 1e6;
  }
  return { x: ox, y: oy };
}

/** Draw order of the points: the unclustered first, so the clustered hard samples end up on top. */
export function drawOrder(cluster: Uint16Array): Uint32Array {
  const order = new Uint32Array(cluster.length);
  let k = 0;
  for (let i = 0; i < cluster.length; i++) if (cluster[i] === UNCLUSTERED) order[k++] = i;
  for (let i = 0; i < cluster.length; i++) if (cluster[i] !== UNCLUSTERED) order[k++] = i;
  return order;
}
