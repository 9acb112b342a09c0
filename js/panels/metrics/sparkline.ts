// A small SVG line chart for one metric: its series as lines on a shared y axis, three y
// ticks, first and last step on the x axis, the latest value in the caption.

import { s } from "../../ui/dom";
import { fmtCount, fmtNum } from "../../ui/format";
import { linearScale, r1 } from "../../ui/scale";
import type { ChartSpec } from "./series";

const HEIGHT = 96;
const LEFT = 44;
const TOP = 6;
const BOTTOM = HEIGHT - 16;

function range(spec: ChartSpec, pick: "steps" | "values"): [number, number] | null {
  let lo = Infinity;
  let hi = -Infinity;
  for (const series of spec.series) {
    for (const v of series[pick]) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  return lo <= hi ? [lo, hi] : null;
}

/** Draws ``spec`` into ``svg`` at ``width``; false when it has no points. */
export function drawSparkline(svg: SVGSVGElement, spec: ChartSpec, width: number): boolean {
  const doc = svg.ownerDocument;
  svg.replaceChildren();
  svg.setAttribute("viewBox", `0 0 ${width} ${HEIGHT}`);
  svg.setAttribute("width", String(width));
  svg.setAttribute("height", String(HEIGHT));
  const xs = range(spec, "steps");
  const ys = range(spec, "values");
  if (!xs || !ys) return false;
  let [y0, y1] = ys;
  if (y1 === y0) {
    const d = Math.abs(y0) * 0.1 || 1;
    y0 -= d;
    y1 += d;
  }
  const [x0, x1] = xs[1] > xs[0] ? xs : [xs[0] - 1, xs[0] + 1];
  const right = Math.max(LEFT + 10, width - 6);
  const x = linearScale(x0, x1, LEFT, right, 2);
  const y = linearScale(y0, y1, BOTTOM, TOP, 2);
  for (const t of y.ticks) {
    const py = r1(y(t));
    s(doc, "line", { class: "onthefly-grid", x1: LEFT, x2: right, y1: py, y2: py }, svg);
    s(doc, "text", { class: "onthefly-tick", x: LEFT - 4, y: py, "text-anchor": "end", dy: "0.32em" }, svg)
      .textContent = y.format(t);
  }
  for (const [step, anchor] of [[x0, "start"], [x1, "end"]] as const) {
    s(doc, "text", { class: "onthefly-tick", x: r1(x(step)), y: HEIGHT - 3, "text-anchor": anchor })
      .textContent = fmtCount(step);
  }
  spec.series.forEach((series, i) => {
    let d = "";
    for (let k = 0; k < series.steps.length; k++) {
      d += `${k ? "L" : "M"}${r1(x(series.steps[k]!))},${r1(y(series.values[k]!))}`;
    }
    if (series.steps.length === 1) d += `h0.1`; // one point: a dot (round caps)
    const path = s(doc, "path", { class: "onthefly-spark", d, "data-series": i % 6, "data-name": series.name }, svg);
    const last = series.values.length - 1;
    s(doc, "title", {}, path).textContent =
      `${series.name}: ${fmtNum(series.values[last])} at step ${fmtCount(series.steps[last])}`;
  });
  return true;
}

/** The caption's latest values: "lr/group 0 0.1 · lr/group 1 0.05". */
export function latestText(spec: ChartSpec): string {
  return spec.series
    .filter((series) => series.values.length > 0)
    .map((series) => {
      const label = spec.series.length > 1 ? `${series.name.replace(/^.*\//, "").replace(/ memory \(MB\)$/, "")} ` : "";
      return `${label}${fmtNum(series.values[series.values.length - 1])}`;
    })
    .join(" · ");
}
