import { describe, expect, it } from "vitest";
import { fmtCount, fmtDuration, fmtLr, fmtNum, fmtPercent, fmtRate } from "../../ui/format";

describe("formatters", () => {
  it("format numbers compactly", () => {
    expect(fmtNum(0.123456)).toBe("0.1235");
    expect(fmtNum(1e-5)).toBe("1.00e-5");
    expect(fmtNum(null)).toBe("—");
    expect(fmtCount(12345)).toBe("12.3k");
    expect(fmtCount(4_500_000)).toBe("4.5M");
    expect(fmtRate(12.34)).toBe("12.3");
    expect(fmtDuration(125)).toBe("2m 05s");
    expect(fmtPercent(0.9381)).toBe("93.8%");
  });

  it("format learning rates", () => {
    expect(fmtLr(3e-4)).toBe("3e-4");
    expect(fmtLr(2.5e-5)).toBe("2.5e-5");
    expect(fmtLr(0.01)).toBe("0.01");
    expect(fmtLr(0.1)).toBe("0.1");
    expect(fmtLr(null)).toBe("—");
  });
});
