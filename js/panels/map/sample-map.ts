// The sample map's view: a WebGL scatter (regl-scatterplot) of the `points` trait, coloured
// by loss or by cluster, with a hover tooltip and lasso selection. It reports selections to
// its owner (`onSelect`); what it highlights is the `selection` trait Python echoes back,
// so every view of a model shows the same selection.

import createScatterplot from "regl-scatterplot";
import { type Points, type Selection, EMPTY_SELECTION, UNCLUSTERED, decodePoints, pointsVersion } from "../../model/points";
import { type IndexLookup, buildLookup, datasetIndices, pointIds } from "../../model/selection";
import {
  type ClusterCategories,
  type LossScale,
  type Rgba,
  clusterCategories,
  clusterColor,
  lossColormap,
  lossGradient,
  lossScale,
  mix,
  over,
  scaleLoss,
  toHex,
} from "../../ui/colors";
import { h, icon } from "../../ui/dom";
import { fmtCount, fmtNum } from "../../ui/format";
import type { Theme } from "../../ui/theme";
import { emptyState } from "../panel";
import { drawOrder, fitToNdc } from "./geometry";
import { type Renderer, acquireRenderer, releaseRenderer } from "./renderer";
import { spatialIndex } from "./spatial";

type Scatterplot = ReturnType<typeof createScatterplot>;
type ColorBy = "loss" | "cluster";

/** Fired on the map element when a points version has been drawn for the first time. */
export const DRAWN_EVENT = "onthefly-map-drawn";

const LASSO_ICON = "M7 2C3.7 2 1.5 3.6 1.5 5.6c0 1.5 1.3 2.7 3.2 3.3-.3.9-.9 1.6-1.7 2.1 1.6 0 2.9-.7 3.6-1.7H7c3.3 0 5.5-1.6 5.5-3.7S10.3 2 7 2zm0 6.1c-2.6 0-4.2-1.2-4.2-2.5S4.4 3.1 7 3.1s4.2 1.2 4.2 2.5S9.6 8.1 7 8.1z";

/** Point size in pixels for n points: big for a few hundred, 1 px for a million. */
function basePointSize(n: number): number {
  return n <= 2000 ? 5 : n <= 20000 ? 3.5 : n <= 200000 ? 2 : 1;
}

/** What is on the map. Plot ids (regl-scatterplot's) follow `order`, not the trait's arrays. */
interface Drawn {
  points: Points;
  /** Point (trait array position) of each plot id. */
  order: Uint32Array;
  /** Dataset index of each plot id. */
  index: Uint32Array;
  cats: ClusterCategories;
  scale: LossScale;
  lookup: IndexLookup | null;
}

export interface SampleMapOptions {
  /** Called with the sorted dataset indices the user selected (empty to clear). */
  onSelect(indices: Uint32Array): void;
}

export class SampleMap {
  /** The map area (canvas and overlays). */
  readonly el: HTMLElement;
  /** The panel header tools: colour toggle, lasso toggle, selection count, clear. */
  readonly tools: HTMLElement;

  private readonly doc: Document;
  private readonly canvas: HTMLCanvasElement;
  private readonly tooltip: HTMLElement;
  private readonly legend: HTMLElement;
  private readonly info: HTMLElement;
  private readonly empty: HTMLElement;
  private readonly colorButtons: Record<ColorBy, HTMLButtonElement>;
  private readonly lassoButton: HTMLButtonElement;
  private readonly count: HTMLElement;
  private readonly clearButton: HTMLButtonElement;

  private renderer: Renderer | null = null;
  private plot: Scatterplot | null = null;
  private failed = false;
  private disposed = false;
  private theme: Theme | null = null;
  private colorBy: ColorBy = "loss";
  private lasso = false;
  private version = -1;
  private pending: { raw: unknown; since: number } | null = null;
  private drawing = false;
  private drawn: Drawn | null = null;
  private selection: Selection = EMPTY_SELECTION;

  constructor(doc: Document, private readonly options: SampleMapOptions) {
    this.doc = doc;
    this.canvas = h(doc, "canvas", { class: "onthefly-map-canvas" });
    this.tooltip = h(doc, "div", { class: "onthefly-map-tooltip", role: "tooltip", hidden: true });
    this.legend = h(doc, "div", { class: "onthefly-map-legend", hidden: true });
    this.info = h(doc, "div", { class: "onthefly-map-info", hidden: true });
    this.empty = emptyState(doc, "the map appears after the first clustering", "onthefly-map-empty");
    this.el = h(
      doc,
      "div",
      { class: "onthefly-map", tabindex: 0, "aria-label": "Sample map: drag to pan, wheel to zoom, shift+drag to lasso" },
      this.canvas,
      this.info,
      this.legend,
      this.tooltip,
      this.empty,
    );

    const colorButton = (by: ColorBy, label: string) =>
      h(doc, "button", { type: "button", class: "onthefly-seg-btn", "data-color-by": by, "aria-pressed": by === this.colorBy }, label);
    this.colorButtons = { loss: colorButton("loss", "Loss"), cluster: colorButton("cluster", "Cluster") };
    this.lassoButton = h(
      doc,
      "button",
      { type: "button", class: "onthefly-btn", "data-action": "lasso", "aria-pressed": false, title: "Lasso: drag to select (or shift+drag)" },
      icon(doc, LASSO_ICON),
      h(doc, "span", { class: "onthefly-btn-label" }, "Lasso"),
    );
    this.count = h(doc, "span", { class: "onthefly-selection-count", hidden: true });
    this.clearButton = h(doc, "button", { type: "button", class: "onthefly-btn", "data-action": "clear-selection", hidden: true }, "Clear");
    this.tools = h(
      doc,
      "div",
      { class: "onthefly-map-tools" },
      this.count,
      this.clearButton,
      this.lassoButton,
      h(doc, "span", { class: "onthefly-seg", role: "group", "aria-label": "Colour points by" }, this.colorButtons.loss, this.colorButtons.cluster),
    );

    for (const by of ["loss", "cluster"] as const) this.colorButtons[by].addEventListener("click", () => this.setColorBy(by));
    this.lassoButton.addEventListener("click", () => this.setLasso(!this.lasso));
    this.clearButton.addEventListener("click", () => this.clear());
    this.el.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape" && this.selection.n > 0) this.clear();
    });
    this.disableControls(true);
  }

  /** Takes a new `points` value; redraws only when its version changed. */
  setPoints(raw: unknown): void {
    const version = pointsVersion(raw);
    if (version === this.version && (this.drawn || this.pending || this.drawing)) return;
    this.version = version;
    this.pending = { raw, since: performance.now() };
    void this.pump();
  }

  setSelection(selection: Selection): void {
    this.selection = selection;
    this.renderSelection();
  }

  setTheme(theme: Theme): void {
    this.theme = theme;
    if (this.plot) void this.plot.set(this.themeProps(theme));
    this.applyColors();
  }

  /** Selects every point of a cluster (a click in the cluster table). */
  selectCluster(cluster: number): void {
    const d = this.drawn;
    if (!d) return;
    const ids: number[] = [];
    for (let k = 0; k < d.points.n; k++) if (d.points.cluster[d.order[k]!] === cluster) ids.push(k);
    if (ids.length === 0) return;
    this.plot?.select(ids, { preventEvent: true });
    this.options.onSelect(datasetIndices(ids, d.index));
  }

  destroy(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.pending = null;
    this.plot?.destroy();
    this.plot = null;
    if (this.renderer) releaseRenderer(this.renderer);
    this.renderer = null;
  }

  // --- drawing --------------------------------------------------------------------------

  private async pump(): Promise<void> {
    if (this.drawing) return;
    this.drawing = true;
    try {
      while (this.pending && !this.disposed) {
        const { raw, since } = this.pending;
        this.pending = null;
        await this.draw(raw, since);
      }
    } catch (err) {
      console.error("[onthefly] failed to draw the sample map:", err);
    } finally {
      this.drawing = false;
    }
  }

  private async draw(raw: unknown, since: number): Promise<void> {
    const points = decodePoints(raw);
    if (!points) {
      this.drawn = null;
      if (this.plot) await this.plot.clear();
      this.showState();
      return;
    }
    // Start the spatial index (in a worker) first; create the plot and the rows meanwhile.
    const order = drawOrder(points.cluster);
    const x = new Float32Array(points.n);
    const y = new Float32Array(points.n);
    for (let k = 0; k < points.n; k++) {
      x[k] = points.x[order[k]!]!;
      y[k] = points.y[order[k]!]!;
    }
    const ndc = fitToNdc(x, y);
    const index = spatialIndex(ndc.x, ndc.y, this.doc.defaultView ?? window);
    const plot = this.ensurePlot();
    if (!plot) return;
    const scale = lossScale(points.loss);
    const cats = clusterCategories(points.cluster);
    const plotIndex = new Uint32Array(points.n);
    const rows: number[][] = new Array(points.n);
    for (let k = 0; k < points.n; k++) {
      const i = order[k]!;
      plotIndex[k] = points.index[i]!;
      rows[k] = [ndc.x[k]!, ndc.y[k]!, scaleLoss(points.loss[i]!, scale), cats.codes[i]!];
    }
    const spatial = await index;
    if (this.disposed || this.pending) return; // a newer version is waiting
    this.drawn = { points, order, index: plotIndex, cats, scale, lookup: null };
    // Colours first, in the same task as `draw`, so that the first frame is the only one:
    // each costs hundreds of ms for a million points without a GPU.
    this.applyColors();
    await plot.draw(rows, { spatialIndex: spatial, zDataType: "continuous", wDataType: "categorical" });
    if (this.disposed) return;
    // `draw` resolves once a frame shows the new points.
    this.el.dataset.drawnVersion = String(points.version);
    this.el.dispatchEvent(
      new CustomEvent(DRAWN_EVENT, { bubbles: true, detail: { version: points.version, n: points.n, ms: performance.now() - since } }),
    );
    this.showState();
    this.renderSelection();
  }

  /** The scatterplot, created on first use; null (with a message) when WebGL is missing. */
  private ensurePlot(): Scatterplot | null {
    if (this.plot || this.failed) return this.plot;
    try {
      this.renderer = acquireRenderer();
      this.plot = createScatterplot({
        renderer: this.renderer,
        canvas: this.canvas,
        width: "auto",
        height: "auto",
        deselectOnEscape: false, // Escape anywhere on the page would clear every view
        deselectOnDblClick: true,
        lassoInitiator: false,
        lassoInitiatorParentElement: this.el,
        lassoLongPressIndicatorParentElement: this.el,
        opacityInactiveScale: 0.35,
        pointOutlineWidth: 1,
        ...(this.theme ? this.themeProps(this.theme) : {}),
      });
    } catch (err) {
      console.warn("[onthefly] the sample map needs WebGL:", err);
      if (this.renderer) releaseRenderer(this.renderer);
      this.renderer = null;
      this.plot = null;
      this.failed = true;
      this.empty.textContent = "the sample map needs WebGL, which this browser does not provide";
      return null;
    }
    const plot = this.plot;
    plot.subscribe("select", ({ points }) => this.options.onSelect(this.drawn ? datasetIndices(points, this.drawn.index) : new Uint32Array(0)));
    plot.subscribe("deselect", () => this.options.onSelect(new Uint32Array(0)));
    plot.subscribe("pointOver", (id) => this.showTooltip(id));
    plot.subscribe("pointOut", () => (this.tooltip.hidden = true));
    return plot;
  }

  private themeProps(t: Theme) {
    return {
      backgroundColor: [t.bg[0], t.bg[1], t.bg[2], 1] as Rgba,
      lassoColor: t.brand,
      pointColorActive: toHex(t.dark ? mix(t.warn, [1, 1, 1, 1], 0.2) : t.warn),
      pointColorHover: toHex(over(t.fg, t.bg)),
      reticleColor: t.border,
    };
  }

  private applyColors(): void {
    const d = this.drawn;
    this.colorButtons.loss.setAttribute("aria-pressed", String(this.colorBy === "loss"));
    this.colorButtons.cluster.setAttribute("aria-pressed", String(this.colorBy === "cluster"));
    this.el.dataset.color = this.colorBy;
    this.renderLegend();
    if (!this.plot || !d) return;
    const size = basePointSize(d.points.n);
    // Samples outside the clusters: the theme's faint text colour, made opaque on the panel.
    const other = this.theme ? toHex(over(this.theme.faint, this.theme.bg)) : "#a0a0a0";
    const categorical = [...d.cats.ids.map(clusterColor), other];
    void this.plot.set({
      colorBy: this.colorBy === "loss" ? "valueA" : "valueB",
      pointColor: this.colorBy === "loss" ? lossColormap(64, this.theme?.dark) : categorical,
      sizeBy: "valueB",
      pointSize: [...d.cats.ids.map(() => size), Math.max(1, size * 0.7)],
      pointSizeSelected: size + 1,
      opacity: d.points.n > 200000 ? 0.55 : d.points.n > 20000 ? 0.75 : 0.9,
    });
  }

  private renderLegend(): void {
    const d = this.drawn;
    this.legend.hidden = !d;
    if (!d) return;
    const doc = this.doc;
    if (this.colorBy === "loss" && !(d.scale.hi > d.scale.lo)) {
      this.legend.replaceChildren(
        h(doc, "span", { class: "onthefly-map-swatch", style: `background:${lossColormap(3, this.theme?.dark)[1]}` }),
        `every point: loss ${fmtNum(d.scale.lo)}`,
      );
      return;
    }
    if (this.colorBy === "loss") {
      this.legend.replaceChildren(
        fmtNum(d.scale.lo),
        h(doc, "span", { class: "onthefly-map-gradient", style: `background:${lossGradient(this.theme?.dark)}` }),
        `${fmtNum(d.scale.hi)} loss${d.scale.log ? " (log)" : ""}`,
      );
      return;
    }
    const items = d.cats.ids.map((id, k) =>
      h(doc, "span", { class: "onthefly-legend-item" },
        h(doc, "span", { class: "onthefly-map-swatch", style: `background:${clusterColor(id)}` }), `${id} (${fmtCount(d.cats.sizes[k])})`),
    );
    const others = d.cats.sizes[d.cats.ids.length] ?? 0;
    if (others > 0) {
      items.push(h(doc, "span", { class: "onthefly-legend-item" }, h(doc, "span", { class: "onthefly-map-swatch onthefly-map-swatch-other" }), `other (${fmtCount(others)})`));
    }
    this.legend.replaceChildren(...items);
  }

  private showState(): void {
    const d = this.drawn;
    this.empty.hidden = Boolean(d);
    this.el.classList.toggle("onthefly-map-ready", Boolean(d));
    this.disableControls(!d);
    this.info.hidden = !d;
    if (d) {
      const p = d.points;
      this.info.textContent = [`${fmtCount(p.n)} points`, p.step !== null ? `step ${p.step}` : "", p.source].filter(Boolean).join(" · ");
    }
    this.renderLegend();
  }

  private disableControls(disabled: boolean): void {
    this.colorButtons.loss.disabled = this.colorButtons.cluster.disabled = this.lassoButton.disabled = disabled;
  }

  // --- interaction ----------------------------------------------------------------------

  private setColorBy(by: ColorBy): void {
    if (this.colorBy === by) return;
    this.colorBy = by;
    this.applyColors();
  }

  private setLasso(on: boolean): void {
    this.lasso = on;
    this.lassoButton.setAttribute("aria-pressed", String(on));
    this.el.classList.toggle("onthefly-map-lasso", on);
    void this.plot?.set({ mouseMode: on ? "lasso" : "panZoom" });
  }

  private clear(): void {
    this.plot?.deselect({ preventEvent: true });
    this.options.onSelect(new Uint32Array(0));
  }

  private renderSelection(): void {
    const sel = this.selection;
    this.count.hidden = this.clearButton.hidden = sel.n === 0;
    const d = this.drawn;
    let shown = 0;
    if (this.plot && d) {
      if (sel.n === 0) {
        this.plot.deselect({ preventEvent: true });
      } else {
        d.lookup ??= buildLookup(d.index);
        const ids = pointIds(sel.index, d.lookup);
        shown = ids.length;
        if (ids.length) this.plot.select(ids, { preventEvent: true });
        else this.plot.deselect({ preventEvent: true });
      }
    }
    this.count.textContent = shown < sel.n && d ? `${fmtCount(sel.n)} selected (${fmtCount(shown)} on the map)` : `${fmtCount(sel.n)} selected`;
    this.count.dataset.n = String(sel.n);
  }

  private showTooltip(id: number): void {
    const d = this.drawn;
    const pos = this.plot?.getScreenPosition(id);
    if (!d || !pos || id < 0 || id >= d.points.n) return;
    const i = d.order[id]!;
    const c = d.points.cluster[i]!;
    const doc = this.doc;
    this.tooltip.replaceChildren(
      h(doc, "div", { class: "onthefly-tooltip-title" }, `sample #${d.index[id]}`),
      h(doc, "div", {}, `loss ${fmtNum(d.points.loss[i])}`),
      h(doc, "div", {}, c === UNCLUSTERED ? "not clustered" : `cluster ${c}`),
    );
    this.tooltip.dataset.index = String(d.index[id]);
    this.tooltip.hidden = false;
    const w = this.el.clientWidth;
    const left = pos[0] + 12 + this.tooltip.offsetWidth > w ? pos[0] - 12 - this.tooltip.offsetWidth : pos[0] + 12;
    this.tooltip.style.left = `${Math.max(0, left)}px`;
    this.tooltip.style.top = `${Math.max(0, pos[1] - 10)}px`;
  }
}
