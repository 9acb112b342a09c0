import { describe, expect, it } from "vitest";
import { selectMessage } from "../../model/messages";
import { UNCLUSTERED, decodePoints, decodeSelection, pointsVersion } from "../../model/points";
import { buildLookup, datasetIndices, pointIds } from "../../model/selection";
import { drawOrder, fitToNdc } from "../../panels/map/geometry";

const dv = (a: Float32Array | Uint16Array | Uint32Array, offset = 1) => {
  const buf = new ArrayBuffer(a.byteLength + offset);
  new Uint8Array(buf, offset).set(new Uint8Array(a.buffer));
  return new DataView(buf, offset, a.byteLength);
};

describe("decodePoints", () => {
  it("decodes misaligned DataViews of every column", () => {
    const p = decodePoints({
      version: 4, step: 10, source: "umap", n: 3,
      x: dv(Float32Array.from([0, 1, 2])), y: dv(Float32Array.from([3, 4, 5]), 2),
      loss: dv(Float32Array.from([0.1, 0.2, 0.3]), 3), cluster: dv(Uint16Array.from([0, 65535, 1])),
      index: dv(Uint32Array.from([40, 10, 30]), 2),
    })!;
    expect(p).toMatchObject({ version: 4, step: 10, source: "umap", n: 3 });
    expect(Array.from(p.y)).toEqual([3, 4, 5]);
    expect(Array.from(p.cluster)).toEqual([0, UNCLUSTERED, 1]);
    expect(Array.from(p.index)).toEqual([40, 10, 30]);
  });

  it("fills missing columns and clips n", () => {
    const p = decodePoints({ n: 9, x: [1, 2], y: [3, 4, 5], index: [7] })!;
    expect(p.n).toBe(2);
    expect(Array.from(p.index)).toEqual([7, 1]);
    expect(Array.from(p.cluster)).toEqual([UNCLUSTERED, UNCLUSTERED]);
    expect(p.loss.every(Number.isNaN)).toBe(true);
  });

  it("is null when there is nothing to draw", () => {
    for (const v of [null, {}, { x: [], y: [] }, { n: 0, x: [1], y: [1] }, { x: "a", y: [1] }]) expect(decodePoints(v)).toBeNull();
    expect(pointsVersion({ version: 3 })).toBe(3);
    expect(pointsVersion(null)).toBe(-1);
  });
});

describe("decodeSelection", () => {
  it("reads a DataView and tolerates garbage", () => {
    expect(Array.from(decodeSelection({ version: 2, n: 2, index: dv(Uint32Array.from([5, 9]), 3) }).index)).toEqual([5, 9]);
    expect(decodeSelection({ n: 5, index: [1] }).n).toBe(1);
    expect(decodeSelection(null).n).toBe(0);
  });
});

describe("fitToNdc", () => {
  it("centres and scales keeping the aspect ratio", () => {
    const { x, y } = fitToNdc(Float32Array.from([0, 10, 5]), Float32Array.from([0, 5, Number.NaN]));
    expect(Array.from(x.slice(0, 2))).toEqual([-0.9, 0.9].map(Math.fround));
    expect(y[0]).toBeCloseTo(-0.45);
    expect(y[1]).toBeCloseTo(0.45);
    expect(x[2]).toBeGreaterThan(100); // NaN parked off screen
  });

  it("keeps coordinates already spanning [-0.9, 0.9]", () => {
    const xs = Float32Array.from([-0.9, 0.3, 0.9]);
    const { x, y } = fitToNdc(xs, Float32Array.from([0.9, -0.9, 0]));
    expect(Array.from(x)).toEqual(Array.from(xs));
    expect(y[1]).toBeCloseTo(-0.9);
  });
});

describe("drawOrder", () => {
  it("puts the unclustered first, keeping the order within each group", () => {
    expect(Array.from(drawOrder(Uint16Array.from([3, UNCLUSTERED, 0, UNCLUSTERED, 3])))).toEqual([1, 3, 0, 2, 4]);
  });
});

describe("selection encoding", () => {
  const index = Uint32Array.from([50, 10, 40, 20, 30]);

  it("maps point ids to sorted unique dataset indices", () => {
    expect(Array.from(datasetIndices([2, 0, 1, 0, 99, -1], index))).toEqual([10, 40, 50]);
  });

  it("sends exactly one exact ArrayBuffer", () => {
    const msg = selectMessage(datasetIndices([3, 1], index));
    expect(msg.content).toEqual({ type: "select", n: 2 });
    expect(msg.buffers).toHaveLength(1);
    expect(msg.buffers[0]).toBeInstanceOf(ArrayBuffer);
    expect(Array.from(new Uint32Array(msg.buffers[0]))).toEqual([10, 20]);
    const sub = Uint32Array.from([1, 2, 3, 4]).subarray(1, 3);
    expect(selectMessage(sub).buffers[0].byteLength).toBe(8);
  });

  it("encodes the empty selection", () => {
    const msg = selectMessage(datasetIndices([], index));
    expect(msg.content.n).toBe(0);
    expect(msg.buffers[0].byteLength).toBe(0);
  });

  it("maps dataset indices back to point ids", () => {
    const lookup = buildLookup(index);
    expect(Array.from(lookup.keys)).toEqual([10, 20, 30, 40, 50]);
    expect(pointIds([40, 10, 999], lookup)).toEqual([2, 1]);
    expect(pointIds([1, 2], buildLookup(Uint32Array.from([1, 2, 3])))).toEqual([0, 1]);
  });

  it("round-trips a large shuffled index", () => {
    const n = 100000;
    const idx = Uint32Array.from({ length: n }, (_, i) => (i * 7919) % 1_000_003);
    const ids = Array.from({ length: 500 }, (_, k) => (k * 197) % n);
    const sel = datasetIndices(ids, idx);
    expect(pointIds(sel, buildLookup(idx)).sort((a, b) => a - b)).toEqual([...new Set(ids)].sort((a, b) => a - b));
  });
});
