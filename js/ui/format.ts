// Small text formatters shared by the dashboard and the chart.

export const DASH = "—";

/** A loss-like value with 4 significant digits. */
export function fmtNum(x: number | null | undefined): string {
  if (x == null || !Number.isFinite(x)) return DASH;
  if (x === 0) return "0";
  const a = Math.abs(x);
  if (a >= 1e5 || a < 1e-3) return x.toExponential(2);
  return String(Number(x.toPrecision(4)));
}

/** An integer count: 950, 12.3k, 4.5M. */
export function fmtCount(x: number | null | undefined): string {
  if (x == null || !Number.isFinite(x)) return DASH;
  const a = Math.abs(x);
  if (a < 1e4) return String(Math.round(x));
  if (a < 1e6) return `${trim(x / 1e3)}k`;
  if (a < 1e9) return `${trim(x / 1e6)}M`;
  return `${trim(x / 1e9)}G`;
}

function trim(x: number): string {
  return String(Number(x.toFixed(Math.abs(x) >= 100 ? 0 : 1)));
}

/** A rate such as samples/s. */
export function fmtRate(x: number | null | undefined): string {
  if (x == null || !Number.isFinite(x)) return DASH;
  if (Math.abs(x) < 100) return String(Number(x.toFixed(1)));
  return fmtCount(x);
}

/** A duration in seconds: 45s, 3m 20s, 1h 02m, 2d 3h. */
export function fmtDuration(sec: number | null | undefined): string {
  if (sec == null || !Number.isFinite(sec) || sec < 0) return DASH;
  const s = Math.round(sec);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, "0")}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ${String(m % 60).padStart(2, "0")}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

/** An accuracy in [0, 1] as a percentage (values above 1 are taken as percent already). */
export function fmtPercent(x: number | null | undefined): string {
  if (x == null || !Number.isFinite(x)) return DASH;
  return `${(x > 1 ? x : x * 100).toFixed(1)}%`;
}

/** Local wall-clock time of a unix timestamp in seconds. */
export function fmtClock(unixSec: number): string {
  if (!Number.isFinite(unixSec) || unixSec <= 0) return "";
  const d = new Date(unixSec * 1000);
  const p = (v: number) => String(v).padStart(2, "0");
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** A learning rate: 3e-4, 0.01, 0.1. */
export function fmtLr(x: number | null | undefined): string {
  if (x == null || !Number.isFinite(x)) return DASH;
  if (x === 0) return "0";
  const a = Math.abs(x);
  if (a < 1e-2 || a >= 1e4) return x.toExponential(1).replace(".0e", "e");
  return String(Number(x.toPrecision(3)));
}
