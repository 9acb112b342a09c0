// The list-like panels: hard-sample clusters, health checks, lineage and the event log.
// Each `render*` replaces the content of its container from normalised trait values.

import { clusterColor } from "./ui/colors";
import { h, icon } from "./ui/dom";
import { DASH, fmtClock, fmtCount, fmtNum, fmtPercent } from "./ui/format";
import type { ClusterRow, Health, HealthStatus, LineageNode, RunEvent } from "./model/types";

// --- events ------------------------------------------------------------------------------

const EVENT_BASE_KEYS = new Set(["seq", "time", "step", "kind"]);
const EVENT_KEY_LABELS: Record<string, string> = { accuracy: "acc" };

/** The extra fields of an event as short text ("loss 0.5 · acc 80.0%"). */
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

/** Tooltip of an event marker on the loss chart. */
export function markerLabel(e: RunEvent): string {
  const detail = eventDetail(e);
  const time = fmtClock(e.time);
  return `${e.kind} @ step ${e.step}${time ? ` (${time})` : ""}${detail ? `\n${detail}` : ""}`;
}

/** The event log, newest first. */
export function renderEvents(list: HTMLElement, events: readonly RunEvent[]): void {
  const doc = list.ownerDocument;
  list.replaceChildren(
    ...[...events].reverse().map((e) =>
      h(
        doc,
        "li",
        { class: "onthefly-event", "data-kind": e.kind, "data-seq": e.seq },
        h(doc, "span", { class: "onthefly-event-time" }, fmtClock(e.time)),
        h(doc, "span", { class: "onthefly-event-kind" }, e.kind.replace(/_/g, " ")),
        h(doc, "span", { class: "onthefly-event-step" }, `step ${e.step}`),
        h(doc, "span", { class: "onthefly-event-detail", title: eventDetail(e) }, eventDetail(e)),
      ),
    ),
  );
}

// --- clusters ----------------------------------------------------------------------------

export const CLUSTER_COLUMNS = ["cluster", "size", "mean loss", "× median", "labels", "predictions"];

/** Cluster table rows; each cluster's swatch matches its colour on the sample map. */
export function renderClusters(body: HTMLElement, clusters: readonly ClusterRow[]): void {
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

// --- health ------------------------------------------------------------------------------

const SEVERITY: Record<HealthStatus, number> = { fail: 0, warn: 1, pass: 2 };

/** Counts of each status, e.g. for the panel title. */
export function healthSummary(health: Health | null): Record<HealthStatus, number> {
  const out: Record<HealthStatus, number> = { pass: 0, warn: 0, fail: 0 };
  for (const r of health?.results ?? []) out[r.status]++;
  return out;
}

/** Health results, failures first; the summary line says when the check ran. */
export function renderHealth(list: HTMLElement, summary: HTMLElement, health: Health | null): void {
  const doc = list.ownerDocument;
  const results = [...(health?.results ?? [])].sort((a, b) => SEVERITY[a.status] - SEVERITY[b.status]);
  list.replaceChildren(
    ...results.map((r) =>
      h(
        doc,
        "li",
        { class: "onthefly-health-item", "data-status": r.status, "data-check": r.check },
        h(doc, "span", { class: "onthefly-badge", "data-status": r.status }, r.status),
        h(
          doc,
          "div",
          { class: "onthefly-health-text" },
          h(doc, "div", { class: "onthefly-health-check" }, r.check.replace(/_/g, " ")),
          r.evidence ? h(doc, "div", { class: "onthefly-health-evidence" }, r.evidence) : "",
          r.explanation ? h(doc, "div", { class: "onthefly-health-explanation" }, r.explanation) : "",
        ),
      ),
    ),
  );
  const when = [health?.step != null ? `step ${health.step}` : "", health?.time ? fmtClock(health.time) : ""].filter(Boolean);
  summary.textContent = health ? `checked ${when.join(" · ") || "once"}` : "";
}

// --- lineage -----------------------------------------------------------------------------

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
export function renderLineage(root: HTMLElement, nodes: readonly LineageNode[]): void {
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
