import { describe, expect, it } from "vitest";
import { linearScale, logScale, logTickFormat } from "../../ui/scale";

describe("axis ticks read alike", () => {
  it("log ticks over many decades are all exponents, not a mix of 1, 0.01 and 1.00e-4", () => {
    const y = logScale(5e-5, 2, 200, 0);
    const labels = y.ticks.map((t) => y.format(t));
    expect(labels.length).toBeGreaterThan(2);
    for (const label of labels) expect(label).toMatch(/^\d(\.\d+)?e-?\d+$/);
    expect(labels).toContain("1e-4");
    expect(labels).toContain("1e0");
  });

  it("log ticks between 0.001 and 10^5 stay plain numbers", () => {
    const y = logScale(0.02, 30, 200, 0);
    expect(y.ticks.map((t) => y.format(t))).toEqual(y.ticks.map((t) => String(t)));
    expect(logTickFormat([0.001, 0.01])(0.001)).toBe("0.001");
  });

  it("linear ticks share one notation", () => {
    const tiny = linearScale(0, 2e-4, 200, 0, 4);
    const labels = tiny.ticks.map((t) => tiny.format(t));
    expect(labels[0]).toBe("0");
    for (const label of labels.slice(1)) expect(label).toMatch(/e-\d+$/);
    const plain = linearScale(0, 1, 200, 0, 4);
    expect(plain.ticks.map((t) => plain.format(t))).toEqual(["0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
  });
});
