// The per-sample loss panel (`histogram` trait): the distribution of the latest pass's
// losses (histogram/chart.ts) and a summary line (count, mean, max).

import { normalizeHistogram } from "../model/normalize";
import type { Histogram } from "../model/types";
import { h } from "../ui/dom";
import { fmtNum } from "../ui/format";
import { HistogramChart } from "./histogram/chart";
import { type PanelDef, emptyState, panelFrame } from "./panel";

const HEIGHT = 260;

export const histogramPanel: PanelDef = {
  name: "histogram",
  traits: ["histogram"],
  create(ctx) {
    const doc = ctx.doc;
    const frame = panelFrame(doc, "histogram", "Per-sample loss now");
    const chart = new HistogramChart(doc);
    const summary = h(doc, "span", { class: "onthefly-panel-note" });
    const empty = emptyState(doc, "no per-sample losses yet", "onthefly-hist-empty");
    const plot = h(doc, "div", { class: "onthefly-hist-plot" }, chart.svg, empty);
    frame.tools.append(summary);
    frame.body.append(plot);

    let histogram: Histogram | null = null;
    let width = 0;
    ctx.watchWidth(plot, (w) => {
      width = w;
      ctx.invalidate();
    });

    return {
      el: frame.el,
      update(changed) {
        if (changed.has("histogram")) histogram = normalizeHistogram(ctx.model.get("histogram"));
        empty.hidden = histogram !== null;
        chart.svg.style.display = histogram ? "" : "none";
        const q = histogram?.quantiles;
        const total = histogram ? histogram.counts.reduce((a, b) => a + b, 0) : 0;
        summary.textContent = q ? [`n ${total.toLocaleString("en-US")}`, `mean ${fmtNum(q.mean)}`, `max ${fmtNum(q.max)}`].join(" · ") : "";
        if (histogram) chart.draw(histogram, Math.round(width || plot.clientWidth || 400), HEIGHT);
      },
    };
  },
};
