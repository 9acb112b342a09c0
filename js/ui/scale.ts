// Axis scales shared by the loss chart and the histogram.

/** A pixel coordinate rounded to 0.1 px, which keeps the charts' SVG short. */
export const r1 = (v: number) => Math.round(v * 10) / 10;

/** A scale with its inverse, tick values and tick labels. */
export interface Scale {
  (v: number): number;
  invert(px: number): number;
  ticks: number[];
  format(v: number): string;
}

function tickStep(span: number, count: number): number {
  const raw = span / Math.max(1, count);
  const p = 10 ** Math.floor(Math.log10(raw));
  const e = raw / p;
  const m = e >= 7.5 ? 10 : e >= 3.5 ? 5 : e >= 1.5 ? 2 : 1;
  return m * p;
}

function linearTicks(lo: number, hi: number, count: number): { ticks: number[]; step: number } {
  if (!(hi > lo)) return { ticks: [lo], step: 1 };
  const step = tickStep(hi - lo, count);
  const ticks: number[] = [];
  const start = Math.ceil(lo / step - 1e-9);
  const stop = Math.floor(hi / step + 1e-9);
  for (let k = start; k <= stop; k++) ticks.push(Number((k * step).toPrecision(12)));
  return { ticks, step };
}

function decimalsFor(step: number): number {
  return Math.max(0, Math.min(8, -Math.floor(Math.log10(step) + 1e-9)));
}

/** Linear map of [d0, d1] onto [r0, r1] with about `count` round ticks. */
export function linearScale(d0: number, d1: number, r0: number, r1: number, count: number): Scale {
  const span = d1 - d0 || 1;
  const k = (r1 - r0) / span;
  const { ticks, step } = linearTicks(d0, d1, count);
  const dec = decimalsFor(step);
  const s = ((v: number) => r0 + (v - d0) * k) as Scale;
  s.invert = (px: number) => d0 + (px - r0) / k;
  s.ticks = ticks;
  // one notation for every tick: exponents when any tick needs one, else fixed decimals
  const exponential = ticks.some((t) => t !== 0 && (Math.abs(t) >= 1e5 || Math.abs(t) < 1e-4));
  s.format = (v: number) => (v === 0 ? "0" : exponential ? compactExponent(v) : v.toFixed(dec));
  return s;
}

/** "1e-4", "2.5e6": a mantissa without trailing zeros and an exponent without "+". */
function compactExponent(v: number): string {
  const [mantissa, exponent] = v.toExponential(2).split("e");
  return `${String(Number(mantissa))}e${Number(exponent)}`;
}

/** Labels for log ticks that read alike: plain numbers while every tick is between 0.001 and
 * 10^5, else every tick as an exponent ("1e-4", "3e-3", "1e0"). */
export function logTickFormat(ticks: readonly number[]): (v: number) => string {
  const plain = ticks.every((t) => t >= 1e-3 && t < 1e5);
  return (v: number) => (plain ? String(Number(v.toPrecision(4))) : compactExponent(v));
}

/** Log10 map of [d0, d1] (both > 0) onto [r0, r1] with 1-2-5 or decade ticks. */
export function logScale(d0: number, d1: number, r0: number, r1: number): Scale {
  const l0 = Math.log10(d0);
  const l1 = Math.log10(d1);
  const span = l1 - l0 || 1;
  const k = (r1 - r0) / span;
  const s = ((v: number) => r0 + (Math.log10(Math.max(v, d0)) - l0) * k) as Scale;
  s.invert = (px: number) => 10 ** (l0 + (px - r0) / k);
  const ticks: number[] = [];
  const decades = Math.ceil(l1) - Math.floor(l0);
  const mults = decades <= 1 ? [1, 2, 5] : decades <= 3 ? [1, 3] : [1];
  for (let e = Math.floor(l0); e <= Math.ceil(l1); e++) {
    for (const m of mults) {
      const v = Number((m * 10 ** e).toPrecision(6));
      if (v >= d0 * (1 - 1e-9) && v <= d1 * (1 + 1e-9)) ticks.push(v);
    }
  }
  if (ticks.length < 2) {
    // Narrow range inside one decade: fall back to linear ticks.
    s.ticks = linearTicks(d0, d1, 4).ticks.filter((v) => v > 0);
  } else {
    const every = Math.ceil(ticks.length / 7);
    s.ticks = ticks.filter((_, i) => i % every === 0);
  }
  s.format = logTickFormat(s.ticks);
  return s;
}
