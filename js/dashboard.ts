// The dashboard. `mountDashboard` is the single entry point every host calls:
// the anywidget `render` today, a WebSocket transport later.

import { LossChart, type Marker } from "./chart";
import { type Curve, EMPTY_CURVE, decodeCurve } from "./curve";
import { fmtClock, fmtCount, fmtDuration, fmtNum, fmtPercent, fmtRate } from "./format";
import {
  type ClusterRow,
  type Command,
  type CommandName,
  type DashboardModel,
  type EvalResult,
  type Listener,
  type RunEvent,
  type RunInfo,
  type RunState,
  normalizeClusters,
  normalizeEvents,
  normalizeRun,
  normalizeValCurve,
} from "./types";

export type { DashboardModel } from "./types";

const CHART_HEIGHT = 220;
const EVENT_LOG_SIZE = 8;
const MARKER_KINDS = new Set(["paused", "resumed", "validation", "test"]);
const TERMINAL: ReadonlySet<RunState> = new Set(["finished", "stopped", "failed"]);

type ButtonCommand = Exclude<CommandName, "test">;

// --- DOM helpers ---------------------------------------------------------------------

type Attrs = Record<string, string | number | boolean | undefined>;

function h<K extends keyof HTMLElementTagNameMap>(
  doc: Document,
  tag: K,
  attrs: Attrs = {},
  ...children: Array<Node | string>
): HTMLElementTagNameMap[K] {
  const node = doc.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    node.setAttribute(k, v === true ? "" : String(v));
  }
  node.append(...children);
  return node;
}

const ICONS: Record<ButtonCommand, string> = {
  pause: "M3 2h3v10H3zM8 2h3v10H8z",
  resume: "M3 1.5v11l9-5.5z",
  stop: "M2.5 2.5h9v9h-9z",
  step: "M2 1.5v11l7-5.5zM10 2h2v10h-2z",
  validate: "M5.5 10.2 2.3 7l-1.1 1.1 4.3 4.3 7.3-7.3-1.1-1.1z",
};

function icon(doc: Document, cmd: ButtonCommand): SVGSVGElement {
  const ns = "http://www.w3.org/2000/svg";
  const svg = doc.createElementNS(ns, "svg");
  svg.setAttribute("class", "onthefly-icon");
  svg.setAttribute("viewBox", "0 0 14 14");
  svg.setAttribute("width", "12");
  svg.setAttribute("height", "12");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const path = doc.createElementNS(ns, "path");
  path.setAttribute("d", ICONS[cmd]);
  svg.appendChild(path);
  return svg;
}

// --- text helpers ----------------------------------------------------------------------

function stepText(run: RunInfo): string {
  const epoch = run.max_epochs != null ? `${run.epoch}/${run.max_epochs}` : `${run.epoch}`;
  return `step ${run.step} · epoch ${epoch}`;
}

function evalText(label: string, r: EvalResult): string {
  const acc = r.accuracy != null ? ` · acc ${fmtPercent(r.accuracy)}` : "";
  return `${label} loss ${fmtNum(r.loss)}${acc} @ ${r.step}`;
}

const EVENT_BASE_KEYS = new Set(["seq", "time", "step", "kind"]);
const EVENT_KEY_LABELS: Record<string, string> = { accuracy: "acc" };

function eventDetail(e: RunEvent): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(e)) {
    if (EVENT_BASE_KEYS.has(k) || v == null) continue;
    const label = EVENT_KEY_LABELS[k] ?? k.replace(/_/g, " ");
    let text: string;
    if (typeof v === "number") text = k === "accuracy" ? fmtPercent(v) : fmtNum(v);
    else if (typeof v === "string") text = v;
    else if (typeof v === "boolean") text = String(v);
    else {
      try {
        text = JSON.stringify(v);
      } catch {
        text = String(v);
      }
    }
    if (text.length > 120) text = `${text.slice(0, 117)}…`;
    parts.push(k === "message" ? text : `${label} ${text}`);
  }
  return parts.join(" · ");
}

function markerLabel(e: RunEvent): string {
  const detail = eventDetail(e);
  const time = fmtClock(e.time);
  return `${e.kind} @ step ${e.step}${time ? ` (${time})` : ""}${detail ? `\n${detail}` : ""}`;
}

function report(what: string, err: unknown): void {
  console.error(`[onthefly] failed to render ${what}:`, err);
}

// --- mount -----------------------------------------------------------------------------------

/**
 * Renders the dashboard for `model` into `el` and keeps it live.
 * Returns a cleanup function that detaches every listener and empties `el`.
 */
export function mountDashboard(el: HTMLElement, model: DashboardModel): () => void {
  const doc = el.ownerDocument;
  const win: Window = doc.defaultView ?? window;
  const dom = new AbortController();
  const on = <T extends EventTarget>(target: T, type: string, fn: (ev: Event) => void) =>
    target.addEventListener(type, fn, { signal: dom.signal });

  // ---- static structure
  const project = h(doc, "span", { class: "onthefly-project" });
  const runName = h(doc, "span", { class: "onthefly-run-name" });
  const sep = h(doc, "span", { class: "onthefly-sep", "aria-hidden": "true" }, "/");
  const title = h(doc, "div", { class: "onthefly-title" }, project, sep, runName);
  const status = h(doc, "span", { class: "onthefly-status", "data-state": "idle", role: "status" }, "idle");
  const step = h(doc, "span", { class: "onthefly-step", "data-step": "0" });
  const throughput = h(doc, "span", { class: "onthefly-throughput", title: "samples per second" });
  const eta = h(doc, "span", { class: "onthefly-eta", title: "estimated time remaining" });
  const device = h(doc, "span", { class: "onthefly-device", title: "device" });
  const meta = h(doc, "div", { class: "onthefly-meta" }, step, throughput, eta, device);
  const header = h(doc, "div", { class: "onthefly-header" }, title, status, meta);

  const progressBar = h(doc, "div", { class: "onthefly-progress-bar" });
  const progress = h(
    doc,
    "div",
    { class: "onthefly-progress", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100, hidden: true },
    progressBar,
  );

  const buttons = new Map<ButtonCommand, HTMLButtonElement>();
  const button = (cmd: ButtonCommand, label: string, tip: string) => {
    const b = h(
      doc,
      "button",
      { type: "button", class: "onthefly-btn", "data-command": cmd, "aria-label": label, title: tip, disabled: true },
      icon(doc, cmd),
      h(doc, "span", { class: "onthefly-btn-label" }, label),
    );
    buttons.set(cmd, b);
    return b;
  };
  const stepN = h(doc, "input", {
    type: "number",
    class: "onthefly-step-n",
    value: 10,
    min: 1,
    step: 1,
    inputmode: "numeric",
    "aria-label": "Number of steps",
    title: "number of steps",
    disabled: true,
  });
  const controls = h(
    doc,
    "div",
    { class: "onthefly-controls", role: "toolbar", "aria-label": "Training controls" },
    button("pause", "Pause", "Pause training after the current step"),
    button("resume", "Resume", "Resume training"),
    button("stop", "Stop", "Stop training"),
    h(doc, "span", { class: "onthefly-step-group" }, stepN, button("step", "Step", "Run this many steps, then pause")),
    button("validate", "Validate", "Evaluate on the validation set now"),
  );

  const chart = new LossChart(doc);
  const readout = h(doc, "span", { class: "onthefly-readout" });
  const logBox = h(doc, "input", { type: "checkbox", class: "onthefly-log" });
  const logLabel = h(doc, "label", { class: "onthefly-log-toggle", title: "logarithmic loss axis" }, logBox, " log");
  const swatch = (cls: string, label: string) =>
    h(doc, "span", { class: "onthefly-legend-item" }, h(doc, "span", { class: `onthefly-swatch ${cls}` }), label);
  const legend = h(
    doc,
    "div",
    { class: "onthefly-legend" },
    swatch("onthefly-swatch-median", "median"),
    swatch("onthefly-swatch-mean", "mean"),
    swatch("onthefly-swatch-inner", "p25–p75"),
    swatch("onthefly-swatch-outer", "p5–p95"),
    swatch("onthefly-swatch-val", "val"),
  );
  const chartBar = h(doc, "div", { class: "onthefly-chart-bar" }, legend, readout, logLabel);
  const empty = h(doc, "div", { class: "onthefly-chart-empty" }, "waiting for the first steps…");
  const plot = h(doc, "div", { class: "onthefly-plot" }, chart.svg, empty);
  const chartBox = h(doc, "div", { class: "onthefly-chart" }, chartBar, plot);

  const metrics = h(doc, "div", { class: "onthefly-metrics", hidden: true });
  const error = h(doc, "pre", { class: "onthefly-error", role: "alert", hidden: true });
  const eventList = h(doc, "ol", { class: "onthefly-events", "aria-label": "Recent events" });
  const eventBox = h(
    doc,
    "div",
    { class: "onthefly-events-box", hidden: true },
    h(doc, "div", { class: "onthefly-caption" }, "events"),
    eventList,
  );

  const clusterBody = h(doc, "tbody", {});
  const clusterBox = h(
    doc,
    "div",
    { class: "onthefly-clusters", hidden: true },
    h(doc, "div", { class: "onthefly-caption" }, "hard-sample clusters"),
    h(
      doc,
      "table",
      { class: "onthefly-cluster-table" },
      h(
        doc,
        "thead",
        {},
        h(doc, "tr", {}, ...["cluster", "size", "mean loss", "× median", "labels", "predictions"].map(
          (label) => h(doc, "th", {}, label),
        )),
      ),
      clusterBody,
    ),
  );

  const root = h(
    doc,
    "div",
    { class: "onthefly-root" },
    header,
    progress,
    controls,
    chartBox,
    metrics,
    error,
    clusterBox,
    eventBox,
  );
  el.replaceChildren(root);

  // ---- state
  let run: RunInfo = normalizeRun(undefined);
  let curve: Curve = EMPTY_CURVE;
  let val: Array<[number, number]> = [];
  let events: RunEvent[] = [];
  let clusters: ClusterRow[] = [];
  let width = 0;
  let hoverRow = -1;
  const dirty = { run: true, curve: true, val: true, events: true, clusters: true, chart: true };
  let frame = 0;
  let disposed = false;

  // ---- sections
  const renderHeader = () => {
    project.textContent = run.project || "onthefly";
    runName.textContent = run.run_name;
    sep.hidden = runName.hidden = !run.run_name;
    status.dataset.state = run.state;
    status.textContent = run.state;
    step.dataset.step = String(run.step);
    step.textContent = stepText(run);
    throughput.textContent = `${fmtRate(run.samples_per_sec)} samples/s`;
    throughput.hidden = run.samples_per_sec == null;
    eta.textContent = `ETA ${fmtDuration(run.eta_sec)}`;
    eta.hidden = run.eta_sec == null || TERMINAL.has(run.state);
    device.textContent = run.device;
    device.hidden = !run.device;

    const total = run.max_epochs != null && run.steps_per_epoch > 0 ? run.max_epochs * run.steps_per_epoch : 0;
    if (total > 0) {
      const pct = run.state === "finished" ? 100 : Math.max(0, Math.min(100, (100 * run.step) / total));
      progress.hidden = false;
      progress.dataset.state = run.state;
      progress.setAttribute("aria-valuenow", pct.toFixed(1));
      progress.title = `${run.step} / ${total} steps · ${fmtCount(run.seen)} samples seen`;
      progressBar.style.width = `${pct}%`;
    } else {
      progress.hidden = true;
    }
  };

  const renderControls = () => {
    const s = run.state;
    const active = s === "running" || s === "paused";
    const enabled: Record<ButtonCommand, boolean> = {
      pause: s === "running",
      resume: s === "paused",
      stop: active,
      step: active,
      validate: active,
    };
    for (const [cmd, b] of buttons) b.disabled = !enabled[cmd];
    stepN.disabled = !enabled.step;
  };

  const renderError = () => {
    const failed = run.state === "failed";
    error.hidden = !failed;
    error.textContent = failed ? run.error || "Training failed (no traceback was reported)." : "";
  };

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

  const renderEvents = () => {
    const recent = events.slice(-EVENT_LOG_SIZE).reverse();
    eventList.replaceChildren(
      ...recent.map((e) => {
        const detail = eventDetail(e);
        return h(
          doc,
          "li",
          { class: "onthefly-event", "data-kind": e.kind, "data-seq": e.seq },
          h(doc, "span", { class: "onthefly-event-time" }, fmtClock(e.time)),
          h(doc, "span", { class: "onthefly-event-kind" }, e.kind),
          h(doc, "span", { class: "onthefly-event-step" }, `step ${e.step}`),
          h(doc, "span", { class: "onthefly-event-detail" }, detail),
        );
      }),
    );
    eventBox.hidden = recent.length === 0;
  };

  const renderClusters = () => {
    clusterBody.replaceChildren(
      ...clusters.map((c) =>
        h(
          doc,
          "tr",
          { "data-cluster": c.cluster },
          h(doc, "td", {}, String(c.cluster)),
          h(doc, "td", {}, fmtCount(c.size)),
          h(doc, "td", {}, fmtNum(c.mean_loss)),
          h(doc, "td", {}, c.loss_vs_median == null ? "—" : `${fmtNum(c.loss_vs_median)}×`),
          h(doc, "td", {}, c.top_labels),
          h(doc, "td", {}, c.top_predictions),
        ),
      ),
    );
    clusterBox.hidden = clusters.length === 0;
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
    const w = Math.round(width || plot.clientWidth || 640);
    const markers: Marker[] = events
      .filter((e) => MARKER_KINDS.has(e.kind))
      .map((e) => ({ step: e.step, kind: e.kind, label: markerLabel(e) }));
    const hasData = chart.draw({ curve, val, markers, log: logBox.checked, width: w, height: CHART_HEIGHT });
    root.classList.toggle("onthefly-empty", !hasData);
    empty.hidden = hasData;
    logLabel.classList.toggle("onthefly-unavailable", chart.logUnavailable);
    if (hoverRow >= curve.n) hoverRow = -1;
    chart.showHover(hoverRow);
    renderReadout();
  };

  const section = (what: string, fn: () => void) => {
    try {
      fn();
    } catch (err) {
      report(what, err);
    }
  };

  const flush = () => {
    frame = 0;
    if (disposed) return;
    if (dirty.run) {
      dirty.run = false;
      section("run", () => {
        run = normalizeRun(model.get("run"));
        renderHeader();
        renderControls();
        renderError();
      });
      dirty.chart = true; // metrics line
    }
    if (dirty.curve) {
      dirty.curve = false;
      section("curve", () => {
        curve = decodeCurve(model.get("curve"));
      });
      dirty.chart = true;
    }
    if (dirty.val) {
      dirty.val = false;
      section("val_curve", () => {
        val = normalizeValCurve(model.get("val_curve"));
      });
      dirty.chart = true;
    }
    if (dirty.events) {
      dirty.events = false;
      section("events", () => {
        events = normalizeEvents(model.get("events"));
        renderEvents();
      });
      dirty.chart = true;
    }
    if (dirty.clusters) {
      dirty.clusters = false;
      section("clusters", () => {
        clusters = normalizeClusters(model.get("clusters"));
        renderClusters();
      });
    }
    if (dirty.chart) {
      dirty.chart = false;
      section("metrics", renderMetrics);
      section("chart", renderChart);
    }
  };

  const schedule = () => {
    if (disposed || frame) return;
    frame = win.requestAnimationFrame(flush);
  };

  // ---- model listeners (kept so that cleanup can pass the same references to off)
  const modelListeners: Array<[string, Listener]> = [
    ["change:run", () => ((dirty.run = true), schedule())],
    ["change:curve", () => ((dirty.curve = true), schedule())],
    ["change:val_curve", () => ((dirty.val = true), schedule())],
    ["change:events", () => ((dirty.events = true), schedule())],
    ["change:clusters", () => ((dirty.clusters = true), schedule())],
  ];
  for (const [event, cb] of modelListeners) model.on(event, cb);

  // ---- DOM listeners
  const send = (name: CommandName, extra: Partial<Command> = {}) => {
    const msg: Command = { type: "command", name, ...extra };
    model.send(msg);
  };
  const sendStep = () => {
    const n = Math.floor(Number(stepN.value));
    if (!Number.isFinite(n) || n < 1) {
      stepN.setAttribute("aria-invalid", "true");
      return;
    }
    stepN.removeAttribute("aria-invalid");
    send("step", { n });
  };
  for (const [cmd, b] of buttons) {
    on(b, "click", () => {
      if (b.disabled) return;
      if (cmd === "step") sendStep();
      else send(cmd);
    });
  }
  on(stepN, "input", () => stepN.removeAttribute("aria-invalid"));
  on(stepN, "keydown", (ev) => {
    if ((ev as KeyboardEvent).key === "Enter" && !buttons.get("step")!.disabled) {
      ev.preventDefault();
      sendStep();
    }
  });
  on(logBox, "change", () => ((dirty.chart = true), schedule()));
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

  // ---- responsive width
  let observer: ResizeObserver | null = null;
  const RO = (win as Window & { ResizeObserver?: typeof ResizeObserver }).ResizeObserver;
  if (RO) {
    observer = new RO((entries) => {
      const entry = entries[entries.length - 1];
      if (!entry) return;
      const w = Math.round(entry.contentRect.width);
      if (w > 0 && w !== width) {
        width = w;
        dirty.chart = true;
        schedule();
      }
    });
    observer.observe(plot);
  }

  // First paint synchronously, so the widget is never blank.
  flush();

  return () => {
    if (disposed) return;
    disposed = true;
    for (const [event, cb] of modelListeners) model.off(event, cb);
    observer?.disconnect();
    observer = null;
    if (frame) win.cancelAnimationFrame(frame);
    frame = 0;
    dom.abort();
    el.replaceChildren();
  };
}

