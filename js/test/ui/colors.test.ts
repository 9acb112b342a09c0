import { describe, expect, it } from "vitest";
import { clusterCategories, clusterColor, lossColormap, lossScale, luminance, over, parseColor, scaleLoss, toHex } from "../../ui/colors";

describe("parseColor", () => {
  it("reads hex and rgb() syntaxes", () => {
    expect(parseColor("#fff")).toEqual([1, 1, 1, 1]);
    expect(parseColor("#00000080")![3]).toBeCloseTo(0.502, 2);
    expect(parseColor("rgb(255, 0, 0)")).toEqual([1, 0, 0, 1]);
    expect(parseColor("rgba(0, 0, 0, 0.87)")).toEqual([0, 0, 0, 0.87]);
    expect(parseColor("rgb(0 128 255 / 50%)")).toEqual([0, 128 / 255, 1, 0.5]);
  });

  it("rejects what it does not know", () => {
    for (const s of ["", "red", "oklch(0.5 0.1 20)", "rgb(1,2)", "#12345"]) expect(parseColor(s)).toBeNull();
  });

  it("composites a translucent colour over the background", () => {
    expect(toHex(over([1, 1, 1, 0.38], parseColor("#212121")!))).toBe("#757575");
    expect(over([0, 0, 0, 1], [1, 1, 1, 1])).toEqual([0, 0, 0, 1]);
  });

  it("round-trips through hex and ranks luminance", () => {
    expect(toHex(parseColor("#1976d2")!)).toBe("#1976d2");
    expect(luminance(parseColor("#111")!)).toBeLessThan(luminance(parseColor("#eee")!));
  });
});

describe("colour scales", () => {
  it("sample the loss colormap from dark purple to yellow", () => {
    const c = lossColormap(5);
    expect(c).toHaveLength(5);
    expect(c[0]).toBe("#440154");
    expect(c[4]).toBe("#fde725");
  });

  it("give clusters dense codes with the unclustered last", () => {
    const cats = clusterCategories(Uint16Array.from([7, 65535, 2, 7, 65535]));
    expect(cats.ids).toEqual([2, 7]);
    expect(Array.from(cats.codes)).toEqual([1, 2, 0, 1, 2]);
    expect(cats.sizes).toEqual([1, 2, 2]);
    expect(clusterColor(0)).toBe(clusterColor(10));
  });

  it("pick a log loss scale for skewed losses and clamp to [0, 1]", () => {
    const loss = Float32Array.from({ length: 1000 }, (_, i) => 0.01 * 1.01 ** i);
    const s = lossScale(loss);
    expect(s.log).toBe(true);
    expect(scaleLoss(s.lo, s)).toBe(0);
    expect(scaleLoss(1e9, s)).toBe(1);
    expect(scaleLoss(Number.NaN, s)).toBe(0);
    expect(scaleLoss(Math.sqrt(s.lo * s.hi), s)).toBeCloseTo(0.5, 5);
  });

  it("give flat losses one colour, the middle one, with no invented range; empty ones a linear scale", () => {
    const flat = lossScale(Float32Array.from([2, 2, 2]));
    expect(flat).toEqual({ lo: 2, hi: 2, log: false });
    expect(scaleLoss(2, flat)).toBe(0.5);
    expect(lossScale(new Float32Array([Number.NaN]))).toEqual({ lo: 0, hi: 1, log: false });
  });

  it("start the colormap above viridis' darkest purple on a dark background", () => {
    const light = lossColormap(5);
    const dark = lossColormap(5, true);
    expect(light[0]).toBe("#440154");
    expect(dark[4]).toBe(light[4]);
    const lum = (hex: string) => luminance(parseColor(hex)!);
    expect(lum(dark[0]!)).toBeGreaterThan(lum(light[0]!) * 2);
  });
});
