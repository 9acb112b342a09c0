// The per-sample loss distribution (`histogram` trait) as an SVG bar chart, with the
// median and the tail quantiles p95 and p99 marked and labelled.

import type { Histogram } from "../../model/types";
import { s } from "../../ui/dom";
import { fmtCount, fmtNum } from "../../ui/format";
import { type Scale, linearScale, logScale, r1 } from "../../ui/scale";

/** The quantiles marked on the chart, left to right. */
const MARKS = [
  { key: "p50", label: "median" },
  { key: "p95", label: "p95" },
  { key: "p99", label: "p99" },
] as const;

export interface Bar {
  x: number;
  y: number;
  w: number;
  h: number;
  /** The bin lies at or above p95. */
  tail: boolean;
  lo: number;
  hi: number;
  count: number;
}

export interface Mark {
  key: string;
  value: number;
  x: number;
  text: string;
  /** Label row (0 is the top), bumped down when labels would overlap. */
  row: number;
}

export interface HistLayout {
  bars: Bar[];
  marks: Mark[];
  x: Scale;
  y: Scale;
  left: number;
  right: number;
  top: number;
  bottom: number;
  log: boolean;
}

const LABEL_ROW = 13;
const FLAT_BAR = 24; // px: the one bar when every loss is the same
const CHAR_W = 6.2;

/** Whether bin edges are geometric (log-spaced): all positive with a constant ratio > 1. */
export function isLogSpaced(edges: readonly number[]): boolean {
  if (edges.length < 3 || !(edges[0]! > 0)) return false;
  const r0 = edges[1]! / edges[0]!;
  if (!(r0 > 1.01)) return false;
  for (let i = 2; i < edges.length; i++) {
    if (Math.abs(edges[i]! / edges[i - 1]! / r0 - 1) > 0.01) return false;
  }
  return true;
}

/** Bars, quantile marks and scales of a histogram drawn in a width × height box. */
export function histogramLayout(hist: Histogram, width: number, height: number): HistLayout {
  const { edges, counts, quantiles } = hist;
  const log = isLogSpaced(edges);
  const left = 40;
  const right = Math.max(left + 20, width - 10);
  const top = 8 + MARKS.length * LABEL_ROW;
  const bottom = height - 20;
  const lo = edges[0]!;
  const flat = !(edges[edges.length - 1]! > lo); // every loss is one value: one bar at it, no invented axis
  const hi = flat ? lo + 1 : edges[edges.length - 1]!;
  const xCount = Math.max(2, Math.round((right - left) / 80));
  const x = log ? logScale(lo, hi, left, right)
    : flat ? linearScale(lo - 1, lo + 1, left, right, 2) : linearScale(lo, hi, left, right, xCount);
  if (flat) {
    x.ticks = [lo];
    x.format = (v: number) => fmtNum(v);
  }
  const maxCount = Math.max(1, ...counts);
  const y = linearScale(0, maxCount, bottom, top, Math.max(2, Math.round((bottom - top) / 35)));
  y.ticks = y.ticks.filter((t) => Number.isInteger(t));
  y.format = (v: number) => fmtCount(v);

  const p95 = quantiles.p95;
  const bars: Bar[] = counts.map((count, i) => {
    const x0 = flat ? x(lo) - FLAT_BAR / 2 : x(edges[i]!);
    const x1 = flat ? x(lo) + FLAT_BAR / 2 : x(edges[i + 1]!);
    const top = y(count);
    return {
      x: x0,
      y: top,
      w: Math.max(0.5, x1 - x0 - (x1 - x0 > 3 ? 1 : 0)),
      h: Math.max(0, bottom - top),
      tail: p95 !== undefined && edges[i]! >= p95,
      lo: edges[i]!,
      hi: edges[i + 1]!,
      count,
    };
  });

  const marks: Mark[] = [];
  const rowEnds: number[] = [];
  for (const { key, label } of MARKS) {
    const value = quantiles[key];
    if (value === undefined) continue;
    const px = Math.min(right, Math.max(left, x(value)));
    const text = `${label} ${fmtNum(value)}`;
    const w = text.length * CHAR_W;
    // Labels start at the line and run right; near the right edge they end at it.
    const start = px + w > width ? px - w : px;
    let row = 0;
    while (row < rowEnds.length && rowEnds[row]! > start - 4) row++;
    rowEnds[row] = start + w;
    marks.push({ key, value, x: px, text, row });
  }
  return { bars, marks, x, y, left, right, top, bottom, log };
}

/** The histogram's SVG; `draw` rebuilds it. */
export class HistogramChart {
  readonly svg: SVGSVGElement;
  private readonly doc: Document;

  constructor(doc: Document) {
    this.doc = doc;
    this.svg = s(doc, "svg", {
      class: "onthefly-hist-svg",
      role: "img",
      "aria-label": "Distribution of the latest per-sample losses, with median, p95 and p99",
    });
  }

  draw(hist: Histogram, width: number, height: number): void {
    const doc = this.doc;
    const svg = this.svg;
    svg.replaceChildren();
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.setAttribute("width", String(width));
    svg.setAttribute("height", String(height));
    const L = histogramLayout(hist, width, height);

    const axes = s(doc, "g", { class: "onthefly-axes" }, svg);
    for (const t of L.y.ticks) {
      const py = r1(L.y(t));
      s(doc, "line", { class: "onthefly-grid", x1: L.left, x2: L.right, y1: py, y2: py }, axes);
      s(doc, "text", { class: "onthefly-tick", x: L.left - 6, y: py, "text-anchor": "end", dy: "0.32em" }, axes).textContent =
        L.y.format(t);
    }
    for (const t of L.x.ticks) {
      const px = r1(L.x(t));
      if (px < L.left - 0.5 || px > L.right + 0.5) continue;
      s(doc, "line", { class: "onthefly-tick-mark", x1: px, x2: px, y1: L.bottom, y2: L.bottom + 4 }, axes);
      s(doc, "text", { class: "onthefly-tick", x: px, y: L.bottom + 15, "text-anchor": "middle" }, axes).textContent =
        L.x.format(t);
    }

    const bars = s(doc, "g", { class: "onthefly-hist-bars" }, svg);
    for (const b of L.bars) {
      if (b.count <= 0) continue;
      const rect = s(
        doc,
        "rect",
        { class: b.tail ? "onthefly-hist-bar onthefly-hist-tail" : "onthefly-hist-bar", x: r1(b.x), y: r1(b.y), width: r1(b.w), height: r1(b.h) },
        bars,
      );
      s(doc, "title", {}, rect).textContent = `${fmtNum(b.lo)}–${fmtNum(b.hi)}: ${fmtCount(b.count)} sample${b.count === 1 ? "" : "s"}`;
    }
    s(doc, "line", { class: "onthefly-axis", x1: L.left, x2: L.right, y1: L.bottom, y2: L.bottom }, axes);

    const marks = s(doc, "g", { class: "onthefly-hist-marks" }, svg);
    for (const m of L.marks) {
      const g = s(doc, "g", { class: "onthefly-hist-mark", "data-q": m.key, "data-value": m.value }, marks);
      const ly = 8 + m.row * LABEL_ROW;
      const px = r1(m.x);
      s(doc, "line", { class: "onthefly-hist-mark-line", x1: px, x2: px, y1: ly + 2, y2: L.bottom }, g);
      const flip = px + m.text.length * CHAR_W > width;
      s(doc, "text", { class: "onthefly-hist-mark-label", x: flip ? px - 3 : px + 3, y: ly, dy: "0.35em", "text-anchor": flip ? "end" : "start" }, g).textContent =
        m.text;
    }
  }
}
