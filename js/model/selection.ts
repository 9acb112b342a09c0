// Translation between point ids (positions in the `points` arrays) and dataset indices,
// both ways: what the map selected goes to Python as dataset indices (messages.ts
// `selectMessage`), and the `selection` trait comes back as dataset indices.

/** Sorted, de-duplicated dataset indices of the given point ids (ids out of range are ignored). */
export function datasetIndices(ids: ArrayLike<number>, index: Uint32Array): Uint32Array {
  const out = new Uint32Array(ids.length);
  let k = 0;
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    if (Number.isInteger(id) && id >= 0 && id < index.length) out[k++] = index[id]!;
  }
  const sorted = out.subarray(0, k).sort();
  let m = 0;
  for (let i = 0; i < sorted.length; i++) if (i === 0 || sorted[i] !== sorted[i - 1]) sorted[m++] = sorted[i]!;
  return out.slice(0, m); // a fresh buffer of exactly m elements
}

/** Dataset index → point id lookup, built once per `points` version. */
export interface IndexLookup {
  /** Dataset indices, ascending. */
  keys: Uint32Array;
  /** Point id of each key. */
  ids: Uint32Array;
}

/** Sorts the points by dataset index (a single typed sort of packed 52-bit keys). */
export function buildLookup(index: Uint32Array): IndexLookup {
  const n = index.length;
  const keys = new Uint32Array(n);
  const ids = new Uint32Array(n);
  let sorted = true;
  for (let i = 1; i < n && sorted; i++) sorted = index[i - 1]! <= index[i]!;
  if (sorted) {
    keys.set(index);
    for (let i = 0; i < n; i++) ids[i] = i;
    return { keys, ids };
  }
  // index * 2^20 + id is exact in a double while n <= 2^20 (the map's 1M cap) and index < 2^32.
  const shift = 2 ** Math.max(20, Math.ceil(Math.log2(n + 1)));
  const packed = new Float64Array(n);
  for (let i = 0; i < n; i++) packed[i] = index[i]! * shift + i;
  packed.sort();
  for (let i = 0; i < n; i++) {
    const p = packed[i]!;
    const id = p % shift;
    ids[i] = id;
    keys[i] = (p - id) / shift;
  }
  return { keys, ids };
}

/** Point ids of the dataset indices (any order) that are on the map, ascending by index. */
export function pointIds(indices: ArrayLike<number>, lookup: IndexLookup): number[] {
  const { keys, ids } = lookup;
  const out: number[] = [];
  for (let i = 0; i < indices.length; i++) {
    const target = indices[i]!;
    let lo = 0;
    let hi = keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (keys[mid]! < target) lo = mid + 1;
      else hi = mid;
    }
    while (lo < keys.length && keys[lo] === target) out.push(ids[lo++]!);
  }
  return out;
}
