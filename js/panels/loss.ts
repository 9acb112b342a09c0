// The training loss panel: the quantile fan of `curve` with the validation points of
// `val_curve` and the run's `markers` (loss/chart.ts), a hover readout, a log-axis toggle, a
// "last N steps" window, smoothing, drag to zoom (double-click resets), and the latest train,
// validation and test metrics (`run`).

import { type Curve, EMPTY_CURVE, decodeCurve } from "../model/curve";
import { finitePairs, normalizeEvents, normalizeRun, normalizeValCurve } from "../model/normalize";
import type { EvalResult, RunInfo } from "../model/types";
import { h } from "../ui/dom";
import { fmtCount, fmtNum, fmtPercent } from "../ui/format";
import { isObject } from "../model/guards";
import { LossChart, type Overlay } from "./loss/chart";
import { compareForm } from "./loss/compare-form";
import { GROUP_LABELS, type Marker, groupsPresent, toMarkers } from "./loss/markers";
import { WINDOWS, lastSteps, overlaysIn, smoothed, stepRange, zoomOf } from "./loss/view";
import { type PanelDef, panelFrame } from "./panel";

const HEIGHT = 220;
const DRAG_PX = 4; // a shorter drag is a click, not a zoom
const MIN_ZOOM_STEPS = 2;
const DEFAULT_SMOOTHING = 0.6; // TensorBoard's default; the recorded median stays drawn faintly behind

function evalText(label: string, r: EvalResult): string {
  const acc = r.accuracy != null ? ` · acc ${fmtPercent(r.accuracy)}` : "";
  return `${label} loss ${fmtNum(r.loss)}${acc} @ ${r.step}`;
}

/** The `overlays` trait: each run's finite [step, median] points. */
function normalizeOverlays(v: unknown): Overlay[] {
  if (!Array.isArray(v)) return [];
  return v.filter(isObject).filter((o) => typeof o.name === "string").map((o) => {
    const points = finitePairs(o.points);
    return { name: String(o.name), steps: Float32Array.from(points, (p) => p[0]),
      median: Float32Array.from(points, (p) => p[1]) };
  });
}

export const lossPanel: PanelDef = {
  name: "loss",
  traits: ["run", "curve", "val_curve", "markers", "overlays", "events"],
  create(ctx) {
    const { doc, signal } = ctx;
    const frame = panelFrame(doc, "loss", "Training loss", "onthefly-panel-wide onthefly-chart");
    const chart = new LossChart(doc);
    const readout = h(doc, "span", { class: "onthefly-readout" });
    const logBox = h(doc, "input", { type: "checkbox", class: "onthefly-log" });
    const logLabel = h(doc, "label", { class: "onthefly-log-toggle", title: "logarithmic loss axis" }, logBox, " log");
    const swatch = (cls: string, label: string) =>
      h(doc, "span", { class: "onthefly-legend-item" }, h(doc, "span", { class: `onthefly-swatch ${cls}` }), label);
    const valLegend = swatch("onthefly-swatch-val", "val"); // shown once there is a validation loss
    valLegend.hidden = true;
    const windowSelect = h(
      doc,
      "select",
      { class: "onthefly-window", title: "steps shown", "aria-label": "Steps shown" },
      ...WINDOWS.map((w) => h(doc, "option", { value: w }, w ? `last ${fmtCount(w)}` : "all steps")),
    );
    const smoothing = h(doc, "input", {
      type: "range", class: "onthefly-smooth", min: 0, max: 0.99, step: 0.01, value: DEFAULT_SMOOTHING,
      title: "smoothing: the weight of an exponential moving average, as in TensorBoard", "aria-label": "Smoothing",
    });
    const markerLegend = h(doc, "span", { class: "onthefly-marker-legend" });
    const overlayLegend = h(doc, "span", { class: "onthefly-marker-legend" });
    const resetZoom = h(doc, "button", { type: "button", class: "onthefly-zoom-reset", title: "show every step again (or double-click the chart)", hidden: true }, "reset zoom");
    frame.tools.append(
      h(doc, "div", { class: "onthefly-legend" },
        swatch("onthefly-swatch-median", "median"),
        swatch("onthefly-swatch-mean", "mean"),
        swatch("onthefly-swatch-inner", "p25–p75"),
        swatch("onthefly-swatch-outer", "p5–p95"),
        valLegend,
        overlayLegend,
        markerLegend),
      resetZoom,
      windowSelect,
      h(doc, "label", { class: "onthefly-smooth-toggle" }, "smooth ", smoothing),
      logLabel,
    );
    chart.svg.setAttribute("data-hint", "drag to zoom, double-click to reset");
    const empty = h(doc, "div", { class: "onthefly-chart-empty" }, "waiting for the first steps…");
    const plot = h(doc, "div", { class: "onthefly-plot" }, chart.svg, empty);
    const metrics = h(doc, "div", { class: "onthefly-metrics", hidden: true });
    const compare = compareForm(doc, (m) => ctx.send(m), signal);
    frame.body.append(h(doc, "div", { class: "onthefly-chart-bar" }, readout), plot, metrics, compare.el);

    let run: RunInfo = normalizeRun(undefined);
    let recorded: Curve = EMPTY_CURVE; // as the kernel sent it
    let curve: Curve = EMPTY_CURVE; // what the chart shows: the window, smoothed
    let val: Array<[number, number]> = [];
    let markers: Marker[] = [];
    let overlays: Overlay[] = [];
    let width = 0;
    let hoverRow = -1;
    let zoom: readonly [number, number] | null = null; // the steps a drag chose
    let dragFrom: number | null = null; // client x where a drag began

    const setZoom = (next: readonly [number, number] | null) => {
      zoom = next;
      resetZoom.hidden = zoom === null;
      ctx.invalidate();
    };

    const renderMarkerLegend = () => {
      markerLegend.replaceChildren(...groupsPresent(markers).map((g) =>
        h(doc, "span", { class: "onthefly-legend-item" },
          h(doc, "span", { class: "onthefly-swatch onthefly-swatch-marker", "data-group": g }), GROUP_LABELS[g])));
    };

    const renderMetrics = () => {
      const parts: string[] = [];
      if (recorded.n > 0) {
        const i = recorded.n - 1;
        parts.push(`train p50 ${fmtNum(recorded.cols.p50[i])} · mean ${fmtNum(recorded.cols.mean[i])}`);
      }
      if (run.val) parts.push(evalText("val", run.val));
      if (run.test) parts.push(evalText("test", run.test));
      metrics.replaceChildren(...parts.map((p) => h(doc, "span", { class: "onthefly-metric" }, p)));
      metrics.hidden = parts.length === 0;
    };

    const renderReadout = () => {
      const i = hoverRow >= 0 && hoverRow < curve.n ? hoverRow : curve.n - 1;
      if (i < 0) {
        readout.textContent = "";
        return;
      }
      const c = curve.cols;
      readout.textContent =
        `step ${Math.round(c.step[i]!)} · p50 ${fmtNum(c.p50[i])} · mean ${fmtNum(c.mean[i])}` +
        ` · p25–p75 ${fmtNum(c.p25[i])}–${fmtNum(c.p75[i])} · p5–p95 ${fmtNum(c.p5[i])}–${fmtNum(c.p95[i])}`;
      readout.classList.toggle("onthefly-readout-hover", hoverRow >= 0);
    };

    const hover = (row: number) => {
      hoverRow = row;
      chart.showHover(row);
      renderReadout();
    };

    logBox.addEventListener("change", () => ctx.invalidate(), { signal });
    windowSelect.addEventListener("change", () => setZoom(null), { signal });
    smoothing.addEventListener("input", () => ctx.invalidate(), { signal });
    resetZoom.addEventListener("click", () => setZoom(null), { signal });
    chart.svg.addEventListener("dblclick", () => setZoom(null), { signal });
    chart.svg.addEventListener(
      "pointerdown",
      (ev) => {
        if (ev.button !== 0 || chart.stepAt(ev.clientX) === null) return;
        dragFrom = ev.clientX;
        chart.svg.setPointerCapture?.(ev.pointerId);
      },
      { signal },
    );
    chart.svg.addEventListener(
      "pointermove",
      (ev) => {
        if (dragFrom !== null) chart.showBrush(dragFrom, ev.clientX);
        const row = chart.rowAt(ev.clientX);
        if (row !== hoverRow) hover(row);
      },
      { signal },
    );
    const endDrag = (ev: PointerEvent, apply: boolean) => {
      if (dragFrom === null) return;
      const from = dragFrom;
      dragFrom = null;
      chart.showBrush(null, null);
      if (!apply || Math.abs(ev.clientX - from) < DRAG_PX) return;
      const a = chart.stepAt(from);
      const b = chart.stepAt(ev.clientX);
      if (a === null || b === null) return;
      const next = zoomOf(a, b, 0);
      if (next) {
        const mid = (next[0] + next[1]) / 2;
        setZoom(next[1] - next[0] >= MIN_ZOOM_STEPS ? next : [mid - MIN_ZOOM_STEPS / 2, mid + MIN_ZOOM_STEPS / 2]);
      }
    };
    chart.svg.addEventListener("pointerup", (ev) => endDrag(ev, true), { signal });
    chart.svg.addEventListener("pointercancel", (ev) => endDrag(ev, false), { signal });
    chart.svg.addEventListener("pointerleave", () => {
      if (dragFrom === null) hover(-1);
    }, { signal });
    ctx.watchWidth(plot, (w) => {
      width = w;
      ctx.invalidate();
    });

    return {
      el: frame.el,
      update(changed) {
        if (changed.has("events")) compare.update(normalizeEvents(ctx.model.get("events")), overlays.map((o) => o.name));
        if (changed.size === 1 && changed.has("events")) return; // only the compare form reads events
        if (changed.has("run")) run = normalizeRun(ctx.model.get("run"));
        if (changed.has("curve")) recorded = decodeCurve(ctx.model.get("curve"));
        const cut = (c: Curve) => (zoom ? stepRange(c, zoom[0], zoom[1]) : lastSteps(c, Number(windowSelect.value)));
        const weight = Number(smoothing.value);
        curve = cut(smoothed(recorded, weight)); // smoothed over the run, then cut: a view
        const raw = weight > 0 ? cut(recorded) : null;
        if (changed.has("val_curve")) {
          val = normalizeValCurve(ctx.model.get("val_curve"));
          valLegend.hidden = val.length === 0;
        }
        if (changed.has("overlays")) {
          overlays = normalizeOverlays(ctx.model.get("overlays"));
          overlayLegend.replaceChildren(...overlays.map((o, i) => h(doc, "span", { class: "onthefly-legend-item" },
            h(doc, "span", { class: "onthefly-swatch onthefly-swatch-overlay", "data-series": i % 4 }), o.name)));
        }
        if (changed.has("overlays")) compare.update(null, overlays.map((o) => o.name));
        if (changed.has("markers")) {
          markers = toMarkers(normalizeEvents(ctx.model.get("markers")));
          renderMarkerLegend();
        }
        const w = Math.round(width || plot.clientWidth || 640);
        const from = zoom ? zoom[0] : curve.n < recorded.n ? curve.cols.step[0]! : -Infinity;
        const to = zoom ? zoom[1] : Infinity;
        const shownVal = val.filter(([step]) => step >= from && step <= to);
        // the whole of each overlaid run over all steps; within a window, the steps the window shows
        const windowed = !zoom && curve.n > 0 && curve.n < recorded.n;
        const shownOverlays = overlaysIn(overlays, from, windowed ? curve.cols.step[curve.n - 1]! : to);
        const hasData = chart.draw({
          curve, val: shownVal, markers, log: logBox.checked, width: w, height: HEIGHT, domain: zoom,
          overlays: shownOverlays, raw,
        });
        ctx.root.classList.toggle("onthefly-empty", !hasData);
        empty.hidden = hasData;
        logLabel.classList.toggle("onthefly-unavailable", chart.logUnavailable);
        if (hoverRow >= curve.n) hoverRow = -1;
        chart.showHover(hoverRow);
        renderReadout();
        renderMetrics();
      },
    };
  },
};
