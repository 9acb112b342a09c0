// Pure-SVG loss chart: quantile fan (p5–p95, p25–p75), median and mean lines,
// validation dots, event markers, a hover guide and a zoom brush. No dependencies.

import { type Curve, nearestRow } from "../../model/curve";
import { s } from "../../ui/dom";
import { fmtCount, fmtNum } from "../../ui/format";
import { type Scale, linearScale, logScale, r1 } from "../../ui/scale";
import type { Marker } from "./markers";

/** Another run's median loss drawn for comparison (`overlays` trait). */
export interface Overlay {
  name: string;
  steps: Float32Array;
  median: Float32Array;
}

export interface ChartInput {
  curve: Curve;
  overlays?: readonly Overlay[];
  val: ReadonlyArray<readonly [number, number]>;
  markers: readonly Marker[];
  log: boolean;
  width: number;
  height: number;
  /** The recorded curve behind a smoothed one: its median is drawn faintly. */
  raw?: Curve | null;
  /** The steps shown (a zoom); else the extent of the data. */
  domain?: readonly [number, number] | null;
}

const QUIET_TICK = 6; // px: a passing check's tick above the x axis

interface Layout {
  width: number;
  height: number;
  left: number;
  right: number;
  top: number;
  bottom: number;
  x: Scale;
  y: Scale;
}

// --- geometry ------------------------------------------------------------------

/** Polyline path, broken into segments at non-finite values. */
function linePath(xs: Float32Array, ys: Float32Array, n: number, L: Layout): string {
  let d = "";
  let pen = false;
  for (let i = 0; i < n; i++) {
    const sx = xs[i]!;
    const v = ys[i]!;
    if (!Number.isFinite(sx) || !Number.isFinite(v)) {
      pen = false;
      continue;
    }
    d += `${pen ? "L" : "M"}${r1(L.x(sx))},${r1(L.y(v))}`;
    pen = true;
  }
  return d;
}

/** Closed band between lo and hi, one sub-path per finite run of rows. */
function bandPath(xs: Float32Array, lo: Float32Array, hi: Float32Array, n: number, L: Layout): string {
  let d = "";
  let i = 0;
  while (i < n) {
    while (i < n && !(Number.isFinite(xs[i]!) && Number.isFinite(lo[i]!) && Number.isFinite(hi[i]!))) i++;
    const start = i;
    while (i < n && Number.isFinite(xs[i]!) && Number.isFinite(lo[i]!) && Number.isFinite(hi[i]!)) i++;
    const end = i; // exclusive
    if (end - start < 1) continue;
    let seg = "";
    for (let j = start; j < end; j++) seg += `${j === start ? "M" : "L"}${r1(L.x(xs[j]!))},${r1(L.y(hi[j]!))}`;
    for (let j = end - 1; j >= start; j--) seg += `L${r1(L.x(xs[j]!))},${r1(L.y(lo[j]!))}`;
    if (end - start === 1) {
      // A single row: draw a thin vertical sliver so it stays visible.
      const x = r1(L.x(xs[start]!));
      seg = `M${x - 1},${r1(L.y(hi[start]!))}L${x + 1},${r1(L.y(hi[start]!))}L${x + 1},${r1(L.y(lo[start]!))}L${x - 1},${r1(L.y(lo[start]!))}`;
    }
    d += `${seg}Z`;
  }
  return d;
}

function extent(values: Iterable<number>, positiveOnly: boolean): [number, number] | null {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (!Number.isFinite(v) || (positiveOnly && v <= 0)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return lo <= hi ? [lo, hi] : null;
}

function* yValues(input: ChartInput): Generator<number> {
  const { curve, val } = input;
  const c = curve.cols;
  for (let i = 0; i < curve.n; i++) {
    yield c.p5[i]!;
    yield c.p95[i]!;
    yield c.p50[i]!;
    yield c.mean[i]!;
  }
  for (const p of val) yield p[1];
  for (const o of input.overlays ?? []) yield* o.median;
  if (input.raw) yield* input.raw.cols.p50.subarray(0, input.raw.n);
}

function* xValues(input: ChartInput): Generator<number> {
  const s = input.curve.cols.step;
  for (let i = 0; i < input.curve.n; i++) yield s[i]!;
  for (const p of input.val) yield p[0];
  for (const o of input.overlays ?? []) yield* o.steps;
}

// --- the chart -------------------------------------------------------------------

export class LossChart {
  readonly svg: SVGSVGElement;
  private readonly doc: Document;
  private readonly gGrid: SVGGElement;
  private readonly gSeries: SVGGElement;
  private readonly gMarkers: SVGGElement;
  private readonly gVal: SVGGElement;
  private readonly gHover: SVGGElement;
  private readonly brush: SVGRectElement;
  private readonly hoverLine: SVGLineElement;
  private readonly hoverMedian: SVGCircleElement;
  private readonly hoverMean: SVGCircleElement;
  private layout: Layout | null = null;
  private curve: Curve | null = null;
  /** Whether the log scale was requested but could not be used (no positive values). */
  logUnavailable = false;

  constructor(doc: Document) {
    this.doc = doc;
    this.svg = s(doc, "svg", {
      class: "onthefly-svg",
      role: "img",
      "aria-label": "Training loss per step: quantile fan, median, mean and validation loss",
    });
    this.gGrid = s(doc, "g", { class: "onthefly-axes" }, this.svg);
    this.gSeries = s(doc, "g", { class: "onthefly-series" }, this.svg);
    this.gMarkers = s(doc, "g", { class: "onthefly-markers" }, this.svg);
    this.gVal = s(doc, "g", { class: "onthefly-val" }, this.svg);
    this.gHover = s(doc, "g", { class: "onthefly-hover", display: "none" }, this.svg);
    this.hoverLine = s(doc, "line", { class: "onthefly-hover-line" }, this.gHover);
    this.hoverMedian = s(doc, "circle", { class: "onthefly-hover-median", r: 3 }, this.gHover);
    this.hoverMean = s(doc, "circle", { class: "onthefly-hover-mean", r: 3 }, this.gHover);
    this.brush = s(doc, "rect", { class: "onthefly-brush", display: "none" }, this.svg);
  }

  /** Redraws everything. Returns false (and draws nothing) when there is no data. */
  draw(input: ChartInput): boolean {
    const { curve, val, markers, width, height } = input;
    const doc = this.doc;
    this.curve = curve;
    this.svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    this.svg.setAttribute("width", String(width));
    this.svg.setAttribute("height", String(height));
    this.gGrid.replaceChildren();
    this.gSeries.replaceChildren();
    this.gMarkers.replaceChildren();
    this.gVal.replaceChildren();
    this.gHover.setAttribute("display", "none");

    const xr = input.domain ? ([input.domain[0], input.domain[1]] as [number, number]) : extent(xValues(input), false);
    let yr = extent(yValues(input), input.log);
    const useLog = input.log && yr !== null;
    this.logUnavailable = input.log && yr === null;
    if (!useLog) yr = extent(yValues(input), false);
    if (!xr || !yr) {
      this.layout = null;
      return false;
    }

    // Domains with a little headroom.
    let [x0, x1] = xr;
    if (x1 === x0) {
      x0 -= 1;
      x1 += 1;
    }
    let [y0, y1] = yr;
    if (useLog) {
      if (y1 === y0) {
        y0 /= 2;
        y1 *= 2;
      } else {
        const pad = (Math.log10(y1) - Math.log10(y0)) * 0.05;
        y0 = 10 ** (Math.log10(y0) - pad);
        y1 = 10 ** (Math.log10(y1) + pad);
      }
    } else {
      if (y1 === y0) {
        const d = Math.abs(y0) * 0.1 || 1;
        y0 -= d;
        y1 += d;
      } else {
        const pad = (y1 - y0) * 0.05;
        y0 = yr[0] >= 0 ? Math.max(0, y0 - pad) : y0 - pad;
        y1 += pad;
      }
    }

    const top = 8;
    const bottom = height - 22;
    const yCount = Math.max(2, Math.round((bottom - top) / 40));
    const yProbe = useLog ? logScale(y0, y1, bottom, top) : linearScale(y0, y1, bottom, top, yCount);
    const labelWidth = Math.max(...yProbe.ticks.map((t) => yProbe.format(t).length), 1) * 6.5;
    const left = Math.ceil(Math.max(34, labelWidth + 12));
    const right = Math.max(left + 10, width - 12);
    const y = yProbe;
    const xCount = Math.max(2, Math.round((right - left) / 90));
    const x = linearScale(x0, x1, left, right, xCount);
    x.ticks = x.ticks.filter((t) => Number.isInteger(t));
    x.format = (v: number) => fmtCount(v);
    const L: Layout = { width, height, left, right, top, bottom, x, y };
    this.layout = L;

    // Axes and grid.
    for (const t of y.ticks) {
      const py = r1(y(t));
      if (py < top - 0.5 || py > bottom + 0.5) continue;
      s(doc, "line", { class: "onthefly-grid", x1: left, x2: right, y1: py, y2: py }, this.gGrid);
      const label = s(doc, "text", { class: "onthefly-tick", x: left - 6, y: py, "text-anchor": "end", dy: "0.32em" }, this.gGrid);
      label.textContent = y.format(t);
    }
    for (const t of x.ticks) {
      const px = r1(x(t));
      s(doc, "line", { class: "onthefly-tick-mark", x1: px, x2: px, y1: bottom, y2: bottom + 4 }, this.gGrid);
      const label = s(doc, "text", { class: "onthefly-tick", x: px, y: bottom + 15, "text-anchor": "middle" }, this.gGrid);
      label.textContent = x.format(t);
    }
    s(doc, "line", { class: "onthefly-axis", x1: left, x2: right, y1: bottom, y2: bottom }, this.gGrid);
    s(doc, "line", { class: "onthefly-axis", x1: left, x2: left, y1: top, y2: bottom }, this.gGrid);

    // Series.
    const c = curve.cols;
    const n = curve.n;
    if (n > 0) {
      s(doc, "path", { class: "onthefly-fan onthefly-fan-outer", d: bandPath(c.step, c.p5, c.p95, n, L) }, this.gSeries);
      s(doc, "path", { class: "onthefly-fan onthefly-fan-inner", d: bandPath(c.step, c.p25, c.p75, n, L) }, this.gSeries);
      const raw = input.raw;
      if (raw && raw.n > 0) {
        s(doc, "path", { class: "onthefly-line onthefly-raw", d: linePath(raw.cols.step, raw.cols.p50, raw.n, L) },
          this.gSeries);
      }
      s(doc, "path", { class: "onthefly-line onthefly-mean", d: linePath(c.step, c.mean, n, L) }, this.gSeries);
      s(doc, "path", { class: "onthefly-line onthefly-median", d: linePath(c.step, c.p50, n, L) }, this.gSeries);
    }

    // Other runs' medians, for comparison.
    (input.overlays ?? []).forEach((o, i) => {
      const path = s(doc, "path", {
        class: "onthefly-line onthefly-overlay", "data-series": i % 4, "data-name": o.name,
        d: linePath(o.steps, o.median, o.steps.length, L),
      }, this.gSeries);
      s(doc, "title", {}, path).textContent = `${o.name}: median loss`;
    });

    // Event markers inside the x domain.
    for (const m of markers) {
      if (!Number.isFinite(m.step) || m.step < x0 || m.step > x1) continue;
      const px = r1(x(m.step));
      const g = s(doc, "g", {
        class: m.quiet ? "onthefly-marker onthefly-marker-quiet" : "onthefly-marker",
        "data-kind": m.kind, "data-group": m.group, "data-status": m.status,
      }, this.gMarkers);
      s(doc, "title", {}, g).textContent = m.label;
      const y1 = m.quiet ? bottom - QUIET_TICK : top;
      s(doc, "line", { class: "onthefly-marker-hit", x1: px, x2: px, y1, y2: bottom }, g);
      s(doc, "line", { class: "onthefly-marker-line", x1: px, x2: px, y1, y2: bottom }, g);
      if (!m.quiet) s(doc, "circle", { class: "onthefly-marker-dot", cx: px, cy: top + 3, r: 3 }, g);
    }

    // Validation points.
    for (const [step, loss] of val) {
      const dot = s(doc, "circle", { class: "onthefly-val-dot", cx: r1(x(step)), cy: r1(y(loss)), r: 3.5 }, this.gVal);
      s(doc, "title", {}, dot).textContent = `validation loss ${fmtNum(loss)} @ step ${step}`;
    }
    return true;
  }

  /** The step under a client x coordinate, clamped to the plot; null before the first draw. */
  stepAt(clientX: number): number | null {
    const px = this.plotX(clientX);
    const L = this.layout;
    if (px === null || !L) return null;
    return L.x.invert(Math.min(Math.max(px, L.left), L.right));
  }

  /** Shades the steps between two client x coordinates (the zoom being dragged); null hides it. */
  showBrush(fromX: number | null, toX: number | null): void {
    const L = this.layout;
    const a = fromX === null ? null : this.plotX(fromX);
    const b = toX === null ? null : this.plotX(toX);
    if (!L || a === null || b === null) {
      this.brush.setAttribute("display", "none");
      return;
    }
    const lo = Math.max(L.left, Math.min(a, b));
    const hi = Math.min(L.right, Math.max(a, b));
    for (const [k, v] of Object.entries({ x: r1(lo), width: r1(Math.max(0, hi - lo)), y: L.top, height: L.bottom - L.top })) {
      this.brush.setAttribute(k, String(v));
    }
    this.brush.removeAttribute("display");
  }

  /** A client x coordinate in the chart's own units, or null. */
  private plotX(clientX: number): number | null {
    const L = this.layout;
    if (!L) return null;
    const rect = this.svg.getBoundingClientRect();
    if (rect.width <= 0) return null;
    return ((clientX - rect.left) * L.width) / rect.width;
  }

  /** Row of the curve under a client x coordinate, or -1. */
  rowAt(clientX: number): number {
    const L = this.layout;
    const curve = this.curve;
    const px = this.plotX(clientX);
    if (!L || !curve || curve.n === 0 || px === null) return -1;
    if (px < L.left - 4 || px > L.right + 4) return -1;
    return nearestRow(curve, L.x.invert(px));
  }

  /** Shows the hover guide at a curve row (or hides it for -1). */
  showHover(row: number): void {
    const L = this.layout;
    const curve = this.curve;
    if (!L || !curve || row < 0 || row >= curve.n) {
      this.gHover.setAttribute("display", "none");
      return;
    }
    const c = curve.cols;
    const px = r1(L.x(c.step[row]!));
    const set = (node: Element, attrs: Record<string, number>) => {
      for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    };
    set(this.hoverLine, { x1: px, x2: px, y1: L.top, y2: L.bottom });
    const med = c.p50[row]!;
    const mean = c.mean[row]!;
    this.hoverMedian.setAttribute("visibility", Number.isFinite(med) ? "visible" : "hidden");
    this.hoverMean.setAttribute("visibility", Number.isFinite(mean) ? "visible" : "hidden");
    if (Number.isFinite(med)) set(this.hoverMedian, { cx: px, cy: r1(L.y(med)) });
    if (Number.isFinite(mean)) set(this.hoverMean, { cx: px, cy: r1(L.y(mean)) });
    this.gHover.removeAttribute("display");
  }
}
