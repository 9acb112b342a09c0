// Axis scales shared by the loss chart and the histogram.

import { fmtNum } from "./format";

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
  s.format = (v: number) => {
    const a = Math.abs(v);
    if (a !== 0 && (a >= 1e5 || a < 1e-4)) return v.toExponential(1);
    return v.toFixed(dec);
  };
  return s;
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
  s.format = (v: number) => fmtNum(v);
  return s;
}
