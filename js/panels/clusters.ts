// The hard-sample cluster table (`clusters` trait). Clicking a row selects that cluster's
// points on the sample map.

import { normalizeClusters } from "../model/normalize";
import type { ClusterRow } from "../model/types";
import { clusterColor } from "../ui/colors";
import { h } from "../ui/dom";
import { DASH, fmtCount, fmtNum } from "../ui/format";
import { type PanelDef, emptyState, panelFrame } from "./panel";

const CLUSTER_COLUMNS = ["cluster", "size", "mean loss", "× median", "labels", "predictions"];

/** Cluster table rows; each cluster's swatch matches its colour on the sample map. */
function renderClusters(body: HTMLElement, clusters: readonly ClusterRow[]): void {
  const doc = body.ownerDocument;
  body.replaceChildren(
    ...clusters.map((c) =>
      h(
        doc,
        "tr",
        { "data-cluster": c.cluster },
        h(doc, "td", {}, h(doc, "span", { class: "onthefly-cluster-swatch", style: `background:${clusterColor(c.cluster)}` }), String(c.cluster)),
        h(doc, "td", {}, fmtCount(c.size)),
        h(doc, "td", {}, fmtNum(c.mean_loss)),
        h(doc, "td", {}, c.loss_vs_median == null ? DASH : `${fmtNum(c.loss_vs_median)}×`),
        h(doc, "td", { class: "onthefly-cluster-text", title: c.top_labels }, c.top_labels),
        h(doc, "td", { class: "onthefly-cluster-text", title: c.top_predictions }, c.top_predictions),
      ),
    ),
  );
}

export const clustersPanel: PanelDef = {
  name: "clusters",
  traits: ["clusters"],
  create(ctx) {
    const doc = ctx.doc;
    const frame = panelFrame(doc, "clusters", "Hard-sample clusters", "onthefly-clusters");
    const body = h(doc, "tbody", {});
    const table = h(
      doc,
      "table",
      { class: "onthefly-cluster-table", hidden: true },
      h(doc, "thead", {}, h(doc, "tr", {}, ...CLUSTER_COLUMNS.map((c) => h(doc, "th", {}, c)))),
      body,
    );
    const empty = emptyState(doc, "no clusters yet: hard samples are clustered during training");
    frame.body.append(empty, h(doc, "div", { class: "onthefly-table-wrap" }, table));
    body.addEventListener(
      "click",
      (ev) => {
        const row = (ev.target as Element).closest?.("tr[data-cluster]");
        if (row) ctx.channel.emit("selectCluster", Number((row as HTMLElement).dataset.cluster));
      },
      { signal: ctx.signal },
    );
    return {
      el: frame.el,
      update() {
        const clusters = normalizeClusters(ctx.model.get("clusters"));
        renderClusters(body, clusters);
        table.hidden = clusters.length === 0;
        empty.hidden = clusters.length > 0;
      },
    };
  },
};
