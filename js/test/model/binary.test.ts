import { describe, expect, it } from "vitest";
import { toFloat32, toUint16, toUint32 } from "../../model/binary";
import { decodeCurve } from "../../model/curve";

/** The bytes of `arr` as a DataView at `offset` into a larger buffer. */
function viewAt(arr: Float32Array | Uint16Array | Uint32Array, offset: number): DataView {
  const buf = new ArrayBuffer(arr.byteLength + offset + 5);
  new Uint8Array(buf, offset, arr.byteLength).set(new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength));
  return new DataView(buf, offset, arr.byteLength);
}

describe("toTyped", () => {
  it("reads aligned DataViews without copying", () => {
    const src = Float32Array.from([1.5, -2, 3.25]);
    const out = toFloat32(viewAt(src, 8))!;
    expect(Array.from(out)).toEqual([1.5, -2, 3.25]);
    expect(out.byteOffset).toBe(8);
  });

  it.each([1, 2, 3, 5])("copies misaligned DataViews (offset %i)", (offset) => {
    expect(Array.from(toFloat32(viewAt(Float32Array.from([0.5, 7]), offset))!)).toEqual([0.5, 7]);
    expect(Array.from(toUint16(viewAt(Uint16Array.from([65535, 3]), offset))!)).toEqual([65535, 3]);
    expect(Array.from(toUint32(viewAt(Uint32Array.from([4294967295, 9]), offset))!)).toEqual([4294967295, 9]);
  });

  it("accepts ArrayBuffers, byte arrays, other typed arrays and number arrays", () => {
    const f = Float32Array.from([1, 2]);
    expect(Array.from(toFloat32(f.buffer)!)).toEqual([1, 2]);
    expect(Array.from(toFloat32(new Uint8Array(f.buffer))!)).toEqual([1, 2]);
    expect(Array.from(toFloat32(Float64Array.from([1, 2]))!)).toEqual([1, 2]);
    expect(Array.from(toFloat32([1, "x", 3])!)).toEqual([1, Number.NaN, 3]);
    expect(toFloat32(f)).toBe(f);
  });

  it("drops a trailing partial element and rejects non-binary values", () => {
    expect(toUint32(new Uint8Array([1, 0, 0, 0, 9]))!.length).toBe(1);
    for (const v of [null, undefined, 3, "abc", { a: 1 }]) expect(toFloat32(v)).toBeNull();
  });
});

describe("decodeCurve", () => {
  const rows = [
    [10, 0.1, 0.2, 0.3, 0.4, 0.5, 0.35],
    [20, 0.05, 0.1, 0.2, 0.3, 0.4, 0.25],
  ];
  const columns = ["step", "p5", "p25", "p50", "p75", "p95", "mean"];

  it("decodes a misaligned DataView", () => {
    const c = decodeCurve({ n: 2, columns, data: viewAt(Float32Array.from(rows.flat()), 3) });
    expect(c.n).toBe(2);
    expect(Array.from(c.cols.step)).toEqual([10, 20]);
    expect(c.cols.p50[1]).toBeCloseTo(0.2);
  });

  it("accepts nested rows and reordered columns", () => {
    const c = decodeCurve({ columns: ["p50", "step"], data: [[0.3, 10], [0.2, 20]] });
    expect(Array.from(c.cols.step)).toEqual([10, 20]);
    expect(Number.isNaN(c.cols.p5[0]!)).toBe(true);
  });

  it("clips n to the data and survives garbage", () => {
    expect(decodeCurve({ n: 99, columns, data: rows.flat() }).n).toBe(2);
    for (const v of [null, 1, "x", { data: "x" }, { n: 0, data: [] }]) expect(decodeCurve(v).n).toBe(0);
  });
});
