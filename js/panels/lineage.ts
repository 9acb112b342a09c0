// The lineage tree (`lineage` trait): the run, its forks and baselines, and merges.

import { normalizeLineage } from "../model/normalize";
import type { LineageNode } from "../model/types";
import { h, icon } from "../ui/dom";
import { fmtCount } from "../ui/format";
import { type PanelDef, panelFrame } from "./panel";

const KIND_ICON: Record<LineageNode["kind"], string> = {
  run: "M7 3.5a3.5 3.5 0 1 1 0 7 3.5 3.5 0 0 1 0-7z",
  fork: "M4 1.5a1.5 1.5 0 0 1 .75 2.8v5.4a1.5 1.5 0 1 1-1.5 0V4.3A1.5 1.5 0 0 1 4 1.5zm6 0a1.5 1.5 0 0 1 .75 2.8V5c0 1.7-1.3 3-3 3H5.5V6.5h2.25c.8 0 1.5-.7 1.5-1.5v-.7A1.5 1.5 0 0 1 10 1.5z",
  baseline: "M7 1.5 12.5 7 7 12.5 1.5 7zm0 2.1L3.6 7 7 10.4 10.4 7z",
  merge: "M4 1.5a1.5 1.5 0 0 1 .75 2.8v.2c0 1.7 1.3 3 3 3h1.5a1.5 1.5 0 1 1 0 1.5h-1.5c-1.2 0-2.3-.5-3-1.3v2.1a1.5 1.5 0 1 1-1.5 0V4.3A1.5 1.5 0 0 1 4 1.5z",
};

/** Where a node sits on the run's timeline: "step 3000" for the run, "forked at step 1500", ... */
export function lineageStep(n: LineageNode): string {
  if (n.step === null) return "";
  if (n.kind === "fork" || n.kind === "baseline") return `forked at step ${n.step}`;
  if (n.kind === "merge") return `at step ${n.step}`;
  return `step ${n.step}`;
}

/** The name a node is shown by: its label, but a merge's id (its label, the method, goes in the details). */
export function lineageName(n: LineageNode): string {
  return n.kind === "merge" && n.label !== n.id ? n.id : n.label;
}

/** The details line of a fork, baseline or merge ("cluster 3 · 180 samples · 60 steps", "swa merge · merged from a"). */
export function lineageDetail(n: LineageNode): string {
  if (n.kind === "merge") {
    const parts = [n.label !== n.id ? n.label : "", n.merged_from.length ? `merged from ${n.merged_from.join(", ")}` : ""];
    return parts.filter(Boolean).join(" · ");
  }
  if (n.kind === "run") return "";
  const parts: string[] = [];
  if (n.slice) parts.push(n.slice);
  if (n.samples !== null) parts.push(`${fmtCount(n.samples)} sample${n.samples === 1 ? "" : "s"}`);
  if (n.budget !== null) parts.push(`${fmtCount(n.budget)} step${n.budget === 1 ? "" : "s"}`);
  return parts.join(" · ");
}

/** The lineage as a nested tree; nodes whose parent is unknown become roots. */
function renderLineage(root: HTMLElement, nodes: readonly LineageNode[]): void {
  const doc = root.ownerDocument;
  const ids = new Set(nodes.map((n) => n.id));
  const children = new Map<string | null, LineageNode[]>();
  for (const n of nodes) {
    const parent = n.parent !== null && ids.has(n.parent) && n.parent !== n.id ? n.parent : null;
    const list = children.get(parent) ?? [];
    list.push(n);
    children.set(parent, list);
  }
  const seen = new Set<string>();
  const branch = (parent: string | null): HTMLElement | null => {
    const kids = (children.get(parent) ?? []).filter((n) => !seen.has(n.id));
    if (kids.length === 0) return null;
    const ul = h(doc, "ul", { class: "onthefly-tree" });
    for (const n of kids) {
      seen.add(n.id);
      const step = lineageStep(n);
      const detail = lineageDetail(n);
      const li = h(
        doc,
        "li",
        { class: "onthefly-tree-node", "data-id": n.id, "data-kind": n.kind, "data-state": n.state || undefined },
        h(
          doc,
          "div",
          { class: "onthefly-tree-row" },
          h(doc, "span", { class: "onthefly-tree-icon" }, icon(doc, KIND_ICON[n.kind])),
          h(doc, "span", { class: "onthefly-tree-label", title: n.id }, lineageName(n)),
          h(doc, "span", { class: "onthefly-tree-kind" }, n.kind),
          step ? h(doc, "span", { class: "onthefly-tree-step" }, step) : "",
          n.state ? h(doc, "span", { class: "onthefly-badge", "data-status": n.state }, n.state) : "",
        ),
        detail ? h(doc, "div", { class: "onthefly-tree-detail", title: detail }, detail) : "",
      );
      const sub = branch(n.id);
      if (sub) li.append(sub);
      ul.append(li);
    }
    return ul;
  };
  const tree = branch(null);
  root.replaceChildren(...(tree ? [tree] : []));
}

export const lineagePanel: PanelDef = {
  name: "lineage",
  traits: ["lineage"],
  create(ctx) {
    const frame = panelFrame(ctx.doc, "lineage", "Lineage");
    const tree = h(ctx.doc, "div", { class: "onthefly-lineage" });
    frame.body.append(tree);
    return { el: frame.el, update: () => renderLineage(tree, normalizeLineage(ctx.model.get("lineage"))) };
  },
};
