// The training loss panel: the quantile fan of `curve` with the validation points of
// `val_curve` and markers for `events` (loss/chart.ts), a hover readout, a log-axis toggle,
// and the latest train, validation and test metrics (`run`).

import { type Curve, EMPTY_CURVE, decodeCurve } from "../model/curve";
import { str } from "../model/guards";
import { normalizeEvents, normalizeRun, normalizeValCurve } from "../model/normalize";
import type { EvalResult, EventKind, RunInfo } from "../model/types";
import { h } from "../ui/dom";
import { markerLabel } from "../ui/event-text";
import { fmtCount, fmtNum, fmtPercent } from "../ui/format";
import { LossChart, type Marker } from "./loss/chart";
import { WINDOWS, lastSteps, smoothed } from "./loss/view";
import { type PanelDef, panelFrame } from "./panel";

const HEIGHT = 220;
// validations are not markers: the validation loss series already shows each one; nor are health
// checks that passed (a warning or failure is drawn in its colour)
export const MARKER_KINDS: ReadonlySet<EventKind> = new Set<EventKind>([
  "paused", "resumed", "test", "plan_executed", "forked", "fork_trained", "merged", "merge_committed", "health",
  "hyperparameters",
]);

function evalText(label: string, r: EvalResult): string {
  const acc = r.accuracy != null ? ` · acc ${fmtPercent(r.accuracy)}` : "";
  return `${label} loss ${fmtNum(r.loss)}${acc} @ ${r.step}`;
}

export const lossPanel: PanelDef = {
  name: "loss",
  traits: ["run", "curve", "val_curve", "events"],
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
      type: "range", class: "onthefly-smooth", min: 0, max: 0.99, step: 0.01, value: 0,
      title: "smoothing: the weight of an exponential moving average, as in TensorBoard", "aria-label": "Smoothing",
    });
    frame.tools.append(
      h(doc, "div", { class: "onthefly-legend" },
        swatch("onthefly-swatch-median", "median"),
        swatch("onthefly-swatch-mean", "mean"),
        swatch("onthefly-swatch-inner", "p25–p75"),
        swatch("onthefly-swatch-outer", "p5–p95"),
        valLegend),
      windowSelect,
      h(doc, "label", { class: "onthefly-smooth-toggle" }, "smooth ", smoothing),
      logLabel,
    );
    const empty = h(doc, "div", { class: "onthefly-chart-empty" }, "waiting for the first steps…");
    const plot = h(doc, "div", { class: "onthefly-plot" }, chart.svg, empty);
    const metrics = h(doc, "div", { class: "onthefly-metrics", hidden: true });
    frame.body.append(h(doc, "div", { class: "onthefly-chart-bar" }, readout), plot, metrics);

    let run: RunInfo = normalizeRun(undefined);
    let recorded: Curve = EMPTY_CURVE; // as the kernel sent it
    let curve: Curve = EMPTY_CURVE; // what the chart shows: the window, smoothed
    let val: Array<[number, number]> = [];
    let markers: Marker[] = [];
    let width = 0;
    let hoverRow = -1;

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
    windowSelect.addEventListener("change", () => ctx.invalidate(), { signal });
    smoothing.addEventListener("input", () => ctx.invalidate(), { signal });
    chart.svg.addEventListener(
      "pointermove",
      (ev) => {
        const row = chart.rowAt(ev.clientX);
        if (row !== hoverRow) hover(row);
      },
      { signal },
    );
    chart.svg.addEventListener("pointerleave", () => hover(-1), { signal });
    ctx.watchWidth(plot, (w) => {
      width = w;
      ctx.invalidate();
    });

    return {
      el: frame.el,
      update(changed) {
        if (changed.has("run")) run = normalizeRun(ctx.model.get("run"));
        if (changed.has("curve")) recorded = decodeCurve(ctx.model.get("curve"));
        curve = smoothed(lastSteps(recorded, Number(windowSelect.value)), Number(smoothing.value));
        if (changed.has("val_curve")) {
          val = normalizeValCurve(ctx.model.get("val_curve"));
          valLegend.hidden = val.length === 0;
        }
        if (changed.has("events")) {
          markers = normalizeEvents(ctx.model.get("events"))
            .filter((e) => MARKER_KINDS.has(e.kind) && !(e.kind === "health" && e.status === "pass"))
            .map((e) => ({ step: e.step, kind: e.kind, label: markerLabel(e), status: str(e.status) }));
        }
        const w = Math.round(width || plot.clientWidth || 640);
        const from = curve.n < recorded.n ? curve.cols.step[0]! : -Infinity;
        const shownVal = val.filter(([step]) => step >= from);
        const hasData = chart.draw({ curve, val: shownVal, markers, log: logBox.checked, width: w, height: HEIGHT });
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
