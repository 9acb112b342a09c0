// The metrics panel (`scalars` trait): one small chart per metric the run measures
// (learning rate per parameter group, gradient norm, throughput, memory, GPU) and per scalar
// the user logs with `session.log(name=value)` or their validation returns.

import { h, s } from "../ui/dom";
import { chartsOf, normalizeScalars } from "./metrics/series";
import { drawSparkline, latestText } from "./metrics/sparkline";
import { type PanelDef, emptyState, panelFrame } from "./panel";

const MIN_CHART_WIDTH = 220;
const GAP = 12;

export const metricsPanel: PanelDef = {
  name: "metrics",
  traits: ["scalars"],
  create(ctx) {
    const { doc } = ctx;
    const frame = panelFrame(doc, "metrics", "Metrics", "onthefly-panel-wide");
    const grid = h(doc, "div", { class: "onthefly-metric-grid" });
    const empty = emptyState(doc, "no metrics yet: they are read as training runs; log your own with session.log(name=value)");
    frame.body.append(empty, grid);
    let width = 0;
    ctx.watchWidth(frame.body, (w) => {
      width = w;
      ctx.invalidate();
    });
    return {
      el: frame.el,
      update() {
        const charts = chartsOf(normalizeScalars(ctx.model.get("scalars")));
        empty.hidden = charts.length > 0;
        const total = Math.round(width || frame.body.clientWidth || 640);
        const columns = Math.max(1, Math.min(charts.length, Math.floor((total + GAP) / (MIN_CHART_WIDTH + GAP))));
        const chartWidth = Math.max(120, Math.floor((total - GAP * (columns - 1)) / columns));
        grid.style.gridTemplateColumns = `repeat(${columns}, minmax(0, 1fr))`;
        grid.replaceChildren(
          ...charts.map((spec) => {
            const svg = s(doc, "svg", { class: "onthefly-svg onthefly-spark-chart", role: "img", "aria-label": spec.title });
            drawSparkline(svg, spec, chartWidth);
            return h(
              doc,
              "figure",
              { class: "onthefly-metric-chart", "data-metric": spec.title },
              h(doc, "figcaption", {},
                h(doc, "span", { class: "onthefly-metric-name" }, spec.title),
                h(doc, "span", { class: "onthefly-metric-latest" }, latestText(spec))),
              svg,
            );
          }),
        );
      },
    };
  },
};
