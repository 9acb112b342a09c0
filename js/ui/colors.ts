// Colour scales of the sample map: a continuous colormap for the loss, a categorical
// palette for clusters, and parsing of CSS colour strings into RGBA.

import { CLUSTER_COLORS } from "../model/contract";
import { UNCLUSTERED } from "../model/points";

export type Rgba = [number, number, number, number];

/** Parses `#rgb[a]`, `#rrggbb[aa]`, `rgb[a](…)` (comma or space syntax, % allowed) into RGBA in [0, 1]. */
export function parseColor(text: string): Rgba | null {
  const s = text.trim().toLowerCase();
  const hex = /^#([0-9a-f]{3,4}|[0-9a-f]{6}|[0-9a-f]{8})$/.exec(s);
  if (hex) {
    let h = hex[1]!;
    if (h.length <= 4) h = [...h].map((c) => c + c).join("");
    const v = (i: number) => parseInt(h.slice(i, i + 2), 16) / 255;
    return [v(0), v(2), v(4), h.length === 8 ? v(6) : 1];
  }
  const fn = /^rgba?\(([^)]*)\)$/.exec(s);
  if (!fn) return null;
  const parts = fn[1]!.split(/[\s,/]+/).filter(Boolean);
  if (parts.length < 3 || parts.length > 4) return null;
  const channel = (p: string, scale: number) => {
    const pct = p.endsWith("%");
    const x = Number.parseFloat(p);
    if (!Number.isFinite(x)) return Number.NaN;
    return Math.min(1, Math.max(0, pct ? x / 100 : x / scale));
  };
  const out: Rgba = [channel(parts[0]!, 255), channel(parts[1]!, 255), channel(parts[2]!, 255), parts[3] ? channel(parts[3], 1) : 1];
  return out.some(Number.isNaN) ? null : out;
}

/** `#rrggbb` of an RGBA colour (alpha dropped). */
export function toHex(c: Rgba): string {
  return `#${c
    .slice(0, 3)
    .map((v) => Math.round(Math.min(1, Math.max(0, v)) * 255).toString(16).padStart(2, "0"))
    .join("")}`;
}

/** Relative luminance (sRGB, WCAG formula). */
export function luminance(c: Rgba): number {
  const lin = (v: number) => (v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
  return 0.2126 * lin(c[0]) + 0.7152 * lin(c[1]) + 0.0722 * lin(c[2]);
}

/** Linear interpolation between two colours. */
export function mix(a: Rgba, b: Rgba, t: number): Rgba {
  return [0, 1, 2, 3].map((i) => a[i]! + (b[i]! - a[i]!) * t) as Rgba;
}

/** A translucent colour composited over an opaque background (the result is opaque). */
export function over(fg: Rgba, bg: Rgba): Rgba {
  return mix([bg[0], bg[1], bg[2], 1], [fg[0], fg[1], fg[2], 1], fg[3]);
}

// Viridis, sampled at 9 stops (matplotlib); perceptually uniform and readable on light and dark.
const VIRIDIS = ["#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725"];

// On a dark background the darkest fifth of viridis (deep purple) all but vanishes: start above it.
const DARK_START = 0.2;

/** `n` colours (hex) of the continuous loss colormap, low to high (``dark``: for a dark background). */
export function lossColormap(n = 64, dark = false): string[] {
  const stops = VIRIDIS.map((h) => parseColor(h)!);
  const start = dark ? DARK_START : 0;
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const t = (start + (1 - start) * (n === 1 ? 0 : i / (n - 1))) * (stops.length - 1);
    const j = Math.min(stops.length - 2, Math.floor(t));
    out.push(toHex(mix(stops[j]!, stops[j + 1]!, t - j)));
  }
  return out;
}

/** CSS gradient of the loss colormap, for the legend. */
export function lossGradient(dark = false): string {
  return `linear-gradient(to right, ${lossColormap(9, dark).join(", ")})`;
}

// Tableau 10 (contract.CLUSTER_COLORS, also session.figure("map")'s): distinct hues that hold up on
// light and dark backgrounds.
const CLUSTER_PALETTE = CLUSTER_COLORS;

/** Colour of cluster ``k``. */
export function clusterColor(k: number): string {
  return CLUSTER_PALETTE[((k % CLUSTER_PALETTE.length) + CLUSTER_PALETTE.length) % CLUSTER_PALETTE.length]!;
}

export interface ClusterCategories {
  /** Category of each point: 0..ids.length-1 for clusters (by ascending id), ids.length for unclustered. */
  codes: Float32Array;
  /** Cluster id of each category. */
  ids: number[];
  /** Number of points in each category (the last one is the unclustered). */
  sizes: number[];
}

/** Dense category codes for the cluster column (65535 = not clustered, always the last category). */
export function clusterCategories(cluster: Uint16Array): ClusterCategories {
  const seen = new Uint8Array(65536);
  for (let i = 0; i < cluster.length; i++) seen[cluster[i]!] = 1;
  const ids: number[] = [];
  for (let c = 0; c < UNCLUSTERED; c++) if (seen[c]) ids.push(c);
  const code = new Uint32Array(65536).fill(ids.length);
  ids.forEach((c, k) => (code[c] = k));
  const codes = new Float32Array(cluster.length);
  const sizes = new Array<number>(ids.length + 1).fill(0);
  for (let i = 0; i < cluster.length; i++) {
    const k = code[cluster[i]!]!;
    codes[i] = k;
    sizes[k]!++;
  }
  return { codes, ids, sizes };
}

export interface LossScale {
  lo: number;
  hi: number;
  log: boolean;
}

/**
 * The colour domain of the loss: its 1st to 99th percentile (from an even sample of at
 * most 20,000 values), on a log axis when all of it is positive and spans over 20×.
 */
export function lossScale(loss: Float32Array): LossScale {
  const step = Math.max(1, Math.floor(loss.length / 20000));
  const sample: number[] = [];
  for (let i = 0; i < loss.length; i += step) if (Number.isFinite(loss[i]!)) sample.push(loss[i]!);
  if (sample.length === 0) return { lo: 0, hi: 1, log: false };
  sample.sort((a, b) => a - b);
  const at = (q: number) => sample[Math.min(sample.length - 1, Math.max(0, Math.round(q * (sample.length - 1))))]!;
  let lo = at(0.01);
  let hi = at(0.99);
  if (!(hi > lo)) {
    lo = sample[0]!;
    hi = sample[sample.length - 1]!;
  }
  if (!(hi > lo)) return { lo, hi: lo, log: false }; // every loss the same: one colour, the middle one
  return { lo, hi, log: lo > 0 && hi / lo > 20 };
}

/** Position of a loss value in the scale, clamped to [0, 1]; NaN reads as 0. */
export function scaleLoss(v: number, s: LossScale): number {
  if (!Number.isFinite(v)) return 0;
  if (!(s.hi > s.lo)) return 0.5;
  const t = s.log
    ? (Math.log(Math.max(v, s.lo)) - Math.log(s.lo)) / (Math.log(s.hi) - Math.log(s.lo))
    : (v - s.lo) / (s.hi - s.lo);
  return Math.min(1, Math.max(0, t));
}
