import KDBush from "kdbush";
import { describe, expect, it } from "vitest";
import { buildKdIndex } from "../../panels/map/spatial";

function random(n: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => ((s = (s * 16807) % 2147483647) / 2147483647) * 2 - 1);
}

describe("buildKdIndex", () => {
  it.each([10, 1000, 70000])("matches KDBush byte for byte (%i points)", (n) => {
    const x = random(n, 1);
    const y = random(n, 2);
    const ref = new KDBush(n, 16, Float32Array);
    for (let i = 0; i < n; i++) ref.add(x[i]!, y[i]!);
    ref.finish();
    const ours = new Uint8Array(buildKdIndex(x, y, 16));
    const theirs = new Uint8Array(ref.data);
    expect(ours.length).toBe(theirs.length);
    expect(ours.findIndex((b, i) => b !== theirs[i])).toBe(-1);
  });

  it("is readable by KDBush.from and answers range queries", () => {
    const x = Float32Array.from([0, 0.5, -0.5, 0.9]);
    const y = Float32Array.from([0, 0.5, -0.5, -0.9]);
    const index = KDBush.from(buildKdIndex(x, y, 16));
    expect(index.range(-0.1, -0.1, 0.6, 0.6).sort()).toEqual([0, 1]);
  });
});
