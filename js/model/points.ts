// Decoding of the sample map traits: `points` (the 2-D projection) and `selection`
// (dataset indices chosen in any view).

import { toFloat32, toUint16, toUint32 } from "./binary";
import { isObject, numOrNull } from "./guards";

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

/** The `version` of a points value without decoding its arrays (-1 when absent). */
export function pointsVersion(v: unknown): number {
  return isObject(v) ? (numOrNull(v.version) ?? -1) : -1;
}

/**
 * Decodes `points`; null when there is nothing to draw. `n` is clipped to the shortest of
 * x and y; a missing or short loss reads as NaN, cluster as unclustered, index as the point id.
 */
export function decodePoints(v: unknown): Points | null {
  if (!isObject(v)) return null;
  const x = toFloat32(v.x);
  const y = toFloat32(v.y);
  if (!x || !y) return null;
  const declared = numOrNull(v.n);
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
    version: numOrNull(v.version) ?? 0,
    step: numOrNull(v.step),
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
  if (!isObject(v)) return EMPTY_SELECTION;
  const index = toUint32(v.index) ?? new Uint32Array(0);
  const declared = numOrNull(v.n);
  const n = Math.max(0, Math.min(declared === null ? index.length : Math.floor(declared), index.length));
  return { version: numOrNull(v.version) ?? 0, n, index: n === index.length ? index : index.subarray(0, n) };
}
