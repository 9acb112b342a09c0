// The dashboard. `mountDashboard` is the single entry point every host calls: the
// anywidget `render` today, a WebSocket transport later. Trait changes only mark parts
// dirty; one animation frame redraws what changed.

import { LossChart, type Marker } from "./chart";
import { ComparePanel } from "./compare";
import { type Curve, EMPTY_CURVE, decodeCurve } from "./model/curve";
import { Controls } from "./controls";
import { emptyState, h, panel } from "./ui/dom";
import { fmtNum, fmtPercent } from "./ui/format";
import { Header } from "./header";
import { HistogramChart } from "./histogram";
import { SampleMap } from "./map";
import { CLUSTER_COLUMNS, healthSummary, markerLabel, renderClusters, renderEvents, renderHealth, renderLineage } from "./panels";
import { PlansPanel } from "./plans";
import { decodeSelection } from "./model/points";
import { readTheme, watchTheme } from "./ui/theme";
import type { DashboardModel, Listener } from "./model/host";
import { selectMessage } from "./model/messages";
import {
  normalizeClusters,
  normalizeCompare,
  normalizeEvents,
  normalizeHealth,
  normalizeHistogram,
  normalizeLineage,
  normalizePlans,
  normalizeRun,
  normalizeValCurve,
} from "./model/normalize";
import type { ClusterRow, EvalResult, Histogram, LineageNode, RunEvent, RunInfo } from "./model/types";

export type { DashboardModel } from "./model/host";

const CHART_HEIGHT = 220;
const HIST_HEIGHT = 260;
// validations are not markers: the validation loss series already shows each one
const MARKER_KINDS = new Set([
  "paused", "resumed", "test", "plan_executed", "fork", "merge", "forked", "merged", "merge_committed", "health",
]);

/** Fired on the mount element with `detail.indices` each time a selection is sent to Python. */
export const SELECT_EVENT = "onthefly-select";

/** Every trait the dashboard listens to. */
const TRAITS = [
  "run", "curve", "val_curve", "events", "clusters", "histogram",
  "points", "selection", "plans", "lineage", "compare", "health",
] as const;
type Trait = (typeof TRAITS)[number];
type Part = Trait | "chart" | "hist" | "theme";

function evalText(label: string, r: EvalResult): string {
  const acc = r.accuracy != null ? ` · acc ${fmtPercent(r.accuracy)}` : "";
  return `${label} loss ${fmtNum(r.loss)}${acc} @ ${r.step}`;
}

/**
 * Renders the dashboard for `model` into `el` and keeps it live.
 * Returns a cleanup function that detaches every listener, frees the WebGL map and empties `el`.
 */
export function mountDashboard(el: HTMLElement, model: DashboardModel): () => void {
  const doc = el.ownerDocument;
  const win: Window = doc.defaultView ?? window;
  const dom = new AbortController();
  const on = (target: EventTarget, type: string, fn: (ev: Event) => void) => target.addEventListener(type, fn, { signal: dom.signal });

  // ---- header and controls
  const header = new Header(doc);
  const controls = new Controls(doc, (cmd) => model.send(cmd), dom.signal);
  const error = h(doc, "pre", { class: "onthefly-error", role: "alert", hidden: true });

  // ---- loss chart
  const loss = panel(doc, "loss", "Training loss", "onthefly-panel-wide onthefly-chart");
  const chart = new LossChart(doc);
  const readout = h(doc, "span", { class: "onthefly-readout" });
  const logBox = h(doc, "input", { type: "checkbox", class: "onthefly-log" });
  const logLabel = h(doc, "label", { class: "onthefly-log-toggle", title: "logarithmic loss axis" }, logBox, " log");
  const swatch = (cls: string, label: string) =>
    h(doc, "span", { class: "onthefly-legend-item" }, h(doc, "span", { class: `onthefly-swatch ${cls}` }), label);
  loss.tools.append(
    h(doc, "div", { class: "onthefly-legend" },
      swatch("onthefly-swatch-median", "median"),
      swatch("onthefly-swatch-mean", "mean"),
      swatch("onthefly-swatch-inner", "p25–p75"),
      swatch("onthefly-swatch-outer", "p5–p95"),
      swatch("onthefly-swatch-val", "val")),
    logLabel,
  );
  const chartEmpty = h(doc, "div", { class: "onthefly-chart-empty" }, "waiting for the first steps…");
  const plot = h(doc, "div", { class: "onthefly-plot" }, chart.svg, chartEmpty);
  const metrics = h(doc, "div", { class: "onthefly-metrics", hidden: true });
  loss.body.append(h(doc, "div", { class: "onthefly-chart-bar" }, readout), plot, metrics);

  // ---- histogram
  const hist = panel(doc, "histogram", "Per-sample loss now");
  const histChart = new HistogramChart(doc);
  const histSummary = h(doc, "span", { class: "onthefly-panel-note" });
  const histEmpty = emptyState(doc, "no per-sample losses yet", "onthefly-hist-empty");
  const histPlot = h(doc, "div", { class: "onthefly-hist-plot" }, histChart.svg, histEmpty);
  hist.tools.append(histSummary);
  hist.body.append(histPlot);

  // ---- sample map
  const mapPanel = panel(doc, "map", "Sample map");
  const map = new SampleMap(doc, {
    onSelect: (indices) => {
      const msg = selectMessage(indices);
      model.send(msg.content, undefined, msg.buffers);
      // what went to Python, for hosts and tests to observe
      el.dispatchEvent(new CustomEvent(SELECT_EVENT, { bubbles: true, detail: { indices: Array.from(indices) } }));
    },
  });
  mapPanel.tools.append(map.tools);
  mapPanel.body.append(map.el);

  // ---- plans, health, clusters, lineage, events
  const plansPanel = panel(doc, "plans", "Plans");
  const plans = new PlansPanel(doc, (msg) => model.send(msg));
  const plansCount = h(doc, "span", { class: "onthefly-count-badge", hidden: true });
  plansPanel.title.append(plansCount);
  plansPanel.body.append(plans.el);

  const healthPanel = panel(doc, "health", "Health");
  const healthList = h(doc, "ul", { class: "onthefly-health-list" });
  const healthNote = h(doc, "span", { class: "onthefly-panel-note" });
  const healthEmpty = emptyState(doc, "no health check yet");
  healthPanel.tools.append(healthNote);
  healthPanel.body.append(healthEmpty, healthList);

  const clusterPanel = panel(doc, "clusters", "Hard-sample clusters", "onthefly-clusters");
  const clusterBody = h(doc, "tbody", {});
  const clusterTable = h(
    doc,
    "table",
    { class: "onthefly-cluster-table", hidden: true },
    h(doc, "thead", {}, h(doc, "tr", {}, ...CLUSTER_COLUMNS.map((c) => h(doc, "th", {}, c)))),
    clusterBody,
  );
  const clusterEmpty = emptyState(doc, "no clusters yet: hard samples are clustered during training");
  clusterPanel.body.append(clusterEmpty, h(doc, "div", { class: "onthefly-table-wrap" }, clusterTable));

  const lineagePanel = panel(doc, "lineage", "Lineage");
  const lineageTree = h(doc, "div", { class: "onthefly-lineage" });
  lineagePanel.body.append(lineageTree);

  const compare = new ComparePanel(doc, (cmd) => model.send(cmd), dom.signal);

  const eventPanel = panel(doc, "events", "Events", "onthefly-panel-wide onthefly-events-box");
  const eventList = h(doc, "ol", { class: "onthefly-events", "aria-label": "Recent events" });
  const eventEmpty = emptyState(doc, "no events yet");
  eventPanel.body.append(eventEmpty, eventList);

  const root = h(
    doc,
    "div",
    { class: "onthefly-root" },
    header.el,
    header.progress,
    controls.el,
    error,
    h(doc, "div", { class: "onthefly-panels" },
      loss.el, hist.el, mapPanel.el, plansPanel.el, healthPanel.el, clusterPanel.el, lineagePanel.el, compare.panel.el,
      eventPanel.el),
  );
  el.replaceChildren(root);

  // ---- state
  let run: RunInfo = normalizeRun(undefined);
  let curve: Curve = EMPTY_CURVE;
  let val: Array<[number, number]> = [];
  let events: RunEvent[] = [];
  let clusters: ClusterRow[] = [];
  let histogram: Histogram | null = null;
  let lineage: LineageNode[] = [];
  let compareValue: unknown = undefined;
  let chartWidth = 0;
  let histWidth = 0;
  let hoverRow = -1;
  const dirty = new Set<Part>([...TRAITS, "chart", "hist", "theme"]);
  let frame = 0;
  let disposed = false;

  // ---- rendering of each part
  const renderMetrics = () => {
    const parts: string[] = [];
    if (curve.n > 0) {
      const i = curve.n - 1;
      parts.push(`train p50 ${fmtNum(curve.cols.p50[i])} · mean ${fmtNum(curve.cols.mean[i])}`);
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

  const renderChart = () => {
    const w = Math.round(chartWidth || plot.clientWidth || 640);
    const markers: Marker[] = events
      .filter((e) => MARKER_KINDS.has(e.kind))
      .map((e) => ({ step: e.step, kind: e.kind, label: markerLabel(e) }));
    const hasData = chart.draw({ curve, val, markers, log: logBox.checked, width: w, height: CHART_HEIGHT });
    root.classList.toggle("onthefly-empty", !hasData);
    chartEmpty.hidden = hasData;
    logLabel.classList.toggle("onthefly-unavailable", chart.logUnavailable);
    if (hoverRow >= curve.n) hoverRow = -1;
    chart.showHover(hoverRow);
    renderReadout();
    renderMetrics();
  };

  const renderHist = () => {
    histEmpty.hidden = histogram !== null;
    histChart.svg.style.display = histogram ? "" : "none";
    const q = histogram?.quantiles;
    const total = histogram ? histogram.counts.reduce((a, b) => a + b, 0) : 0;
    histSummary.textContent = q ? [`n ${total.toLocaleString("en-US")}`, `mean ${fmtNum(q.mean)}`, `max ${fmtNum(q.max)}`].join(" · ") : "";
    if (histogram) histChart.draw(histogram, Math.round(histWidth || histPlot.clientWidth || 400), HIST_HEIGHT);
  };

  const renderers: Record<Part, () => void> = {
    run: () => {
      run = normalizeRun(model.get("run"));
      header.render(run);
      controls.render(run.state);
      compare.setRunState(run.state);
      const failed = run.state === "failed";
      error.hidden = !failed;
      error.textContent = failed ? run.error || "Training failed (no traceback was reported)." : "";
      dirty.add("chart"); // the metrics line
    },
    curve: () => {
      curve = decodeCurve(model.get("curve"));
      dirty.add("chart");
    },
    val_curve: () => {
      val = normalizeValCurve(model.get("val_curve"));
      dirty.add("chart");
    },
    events: () => {
      events = normalizeEvents(model.get("events"));
      renderEvents(eventList, events);
      eventEmpty.hidden = events.length > 0;
      dirty.add("chart");
    },
    clusters: () => {
      clusters = normalizeClusters(model.get("clusters"));
      renderClusters(clusterBody, clusters);
      clusterTable.hidden = clusters.length === 0;
      clusterEmpty.hidden = clusters.length > 0;
    },
    histogram: () => {
      histogram = normalizeHistogram(model.get("histogram"));
      dirty.add("hist");
    },
    points: () => map.setPoints(model.get("points")),
    selection: () => map.setSelection(decodeSelection(model.get("selection"))),
    plans: () => {
      plans.update(normalizePlans(model.get("plans")));
      plansCount.textContent = String(plans.proposed);
      plansCount.hidden = plans.proposed === 0;
    },
    lineage: () => {
      lineage = normalizeLineage(model.get("lineage"));
      renderLineage(lineageTree, lineage);
      dirty.add("compare"); // its rows show each model's kind and state
    },
    compare: () => {
      const value = model.get("compare");
      // a new value (not a lineage change) answers a pending Compare click
      compare.update(normalizeCompare(value), lineage, value !== compareValue);
      compareValue = value;
    },
    health: () => {
      const health = normalizeHealth(model.get("health"));
      renderHealth(healthList, healthNote, health);
      healthEmpty.hidden = health !== null;
      const counts = healthSummary(health);
      healthPanel.el.dataset.worst = counts.fail ? "fail" : counts.warn ? "warn" : health ? "pass" : "none";
    },
    chart: renderChart,
    hist: renderHist,
    theme: () => {
      if (!root.isConnected) return void dirty.add("theme"); // computed styles need the page; retried on resize
      map.setTheme(readTheme(root));
    },
  };
  const ORDER: readonly Part[] = [...TRAITS, "chart", "hist", "theme"];

  const flush = () => {
    frame = 0;
    if (disposed) return;
    for (const part of ORDER) {
      if (!dirty.has(part)) continue;
      dirty.delete(part);
      try {
        renderers[part]();
      } catch (err) {
        console.error(`[onthefly] failed to render ${part}:`, err);
      }
    }
  };

  const schedule = () => {
    if (disposed || frame) return;
    frame = win.requestAnimationFrame(flush);
  };
  const mark = (part: Part) => {
    dirty.add(part);
    schedule();
  };

  // ---- model listeners (kept so that cleanup can pass the same references to off)
  const modelListeners: Array<[string, Listener]> = TRAITS.map((t) => [`change:${t}`, () => mark(t)]);
  for (const [event, cb] of modelListeners) model.on(event, cb);

  // ---- DOM listeners
  on(logBox, "change", () => mark("chart"));
  on(chart.svg, "pointermove", (ev) => {
    const row = chart.rowAt((ev as PointerEvent).clientX);
    if (row === hoverRow) return;
    hoverRow = row;
    chart.showHover(row);
    renderReadout();
  });
  on(chart.svg, "pointerleave", () => {
    hoverRow = -1;
    chart.showHover(-1);
    renderReadout();
  });
  on(clusterBody, "click", (ev) => {
    const row = (ev.target as Element).closest?.("tr[data-cluster]");
    if (row) map.selectCluster(Number((row as HTMLElement).dataset.cluster));
  });
  const stopWatchingTheme = watchTheme(doc, () => mark("theme"));

  // ---- responsive widths
  let observer: ResizeObserver | null = null;
  const RO = (win as Window & { ResizeObserver?: typeof ResizeObserver }).ResizeObserver;
  if (RO) {
    observer = new RO((entries) => {
      for (const entry of entries) {
        const w = Math.round(entry.contentRect.width);
        if (w <= 0) continue;
        if (entry.target === plot && w !== chartWidth) {
          chartWidth = w;
          mark("chart");
        } else if (entry.target === histPlot && w !== histWidth) {
          histWidth = w;
          mark("hist");
        }
      }
      if (dirty.has("theme")) schedule();
    });
    observer.observe(plot);
    observer.observe(histPlot);
  }

  // First paint synchronously, so the widget is never blank.
  flush();

  return () => {
    if (disposed) return;
    disposed = true;
    for (const [event, cb] of modelListeners) model.off(event, cb);
    observer?.disconnect();
    observer = null;
    stopWatchingTheme();
    if (frame) win.cancelAnimationFrame(frame);
    frame = 0;
    dom.abort();
    plans.dispose();
    compare.dispose();
    map.destroy();
    el.replaceChildren();
  };
}
