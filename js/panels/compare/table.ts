// The compare panel's table (`compare` trait): loss and accuracy of the run, its experts and
// merge candidates on each fork's slice and on validation, one row per model, columns grouped
// per target, the best value of each column highlighted.

import type { CompareTable, LineageNode } from "../../model/types";
import { h } from "../../ui/dom";
import { fmtNum, fmtPercent } from "../../ui/format";

export type Metric = "loss" | "accuracy" | "other";

/** One value column of the table: "slice run-fork1 loss" is target "slice run-fork1", metric loss. */
export interface CompareColumn {
  /** Position in `CompareTable.columns` (and in each row's values). */
  index: number;
  name: string;
  target: string;
  metric: Metric;
  /** The header under the target: "loss", "acc", or the whole name for an ungrouped column. */
  label: string;
}

export interface CompareGroup {
  /** "" for columns that name no target (shown on their own). */
  target: string;
  columns: CompareColumn[];
}

const METRIC_SUFFIXES: ReadonlyArray<[string, Metric, string]> = [
  [" loss", "loss", "loss"],
  [" accuracy", "accuracy", "acc"],
];

/** Splits a column name into its target and metric. */
export function splitColumn(name: string, index: number): CompareColumn {
  for (const [suffix, metric, label] of METRIC_SUFFIXES) {
    if (name.length > suffix.length && name.endsWith(suffix)) {
      return { index, name, target: name.slice(0, -suffix.length), metric, label };
    }
  }
  if (name === "loss" || name === "accuracy") return { index, name, target: "", metric: name, label: name };
  return { index, name, target: "", metric: "other", label: name };
}

/** The columns grouped per target, in the order the targets first appear. */
export function groupColumns(columns: readonly string[]): CompareGroup[] {
  const groups: CompareGroup[] = [];
  const byTarget = new Map<string, CompareGroup>();
  columns.forEach((name, i) => {
    const col = splitColumn(name, i);
    if (col.target === "") {
      groups.push({ target: "", columns: [col] });
      return;
    }
    let group = byTarget.get(col.target);
    if (!group) {
      group = { target: col.target, columns: [] };
      byTarget.set(col.target, group);
      groups.push(group);
    }
    group.columns.push(col);
  });
  return groups;
}

/**
 * For each column, the rows holding its best value: the lowest loss, the highest accuracy.
 * Nothing is best in a column with fewer than two values, with all values equal, or of an
 * unknown metric. Rows of models in `skip` (e.g. discarded merges) take no part.
 */
export function bestRows(table: CompareTable, skip: ReadonlySet<string> = new Set()): Array<Set<number>> {
  return table.columns.map((name, c) => {
    const metric = splitColumn(name, c).metric;
    const best = new Set<number>();
    if (metric === "other") return best;
    const sign = metric === "loss" ? 1 : -1;
    let top = Number.POSITIVE_INFINITY;
    let count = 0;
    let distinct = false;
    let first: number | null = null;
    table.rows.forEach((row, r) => {
      const v = row.values[c];
      if (v == null || !Number.isFinite(v) || skip.has(row.model)) return;
      count++;
      if (first === null) first = v;
      else if (v !== first) distinct = true;
      const key = sign * v;
      if (key < top) {
        top = key;
        best.clear();
      }
      if (key === top) best.add(r);
    });
    if (count < 2 || !distinct) best.clear();
    return best;
  });
}

/** A value as shown in its column: losses with 4 significant digits, accuracies as %. */
export function fmtMetric(metric: Metric, v: number | null | undefined): string {
  return metric === "accuracy" ? fmtPercent(v) : fmtNum(v);
}

const MINUS = "\u2212";

/** The difference `v - ref` as text: "−0.39" for a loss, "+4.2 pts" for an accuracy. */
export function fmtDelta(metric: Metric, v: number, ref: number): string {
  const d = v - ref;
  if (d === 0) return "±0";
  const sign = d > 0 ? "+" : MINUS;
  if (metric === "accuracy") {
    const points = Math.abs(d) * (Math.abs(v) > 1 || Math.abs(ref) > 1 ? 1 : 100);
    return `${sign}${points.toFixed(1)} pts`;
  }
  return `${sign}${fmtNum(Math.abs(d))}`;
}

/** "slice run-fork1" → ["slice", "run-fork1"]; "validation" → ["", "validation"]. */
export function targetParts(target: string): [string, string] {
  const m = /^(slice|train|test)\s+(.+)$/.exec(target);
  return m ? [m[1]!, m[2]!] : ["", target];
}

/** The table element for `table`; `nodes` (the lineage) give each model its kind and state. */
export function renderCompareTable(doc: Document, table: CompareTable, nodes: readonly LineageNode[]): HTMLTableElement {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const discarded = new Set(table.rows.filter((r) => byId.get(r.model)?.state === "discarded").map((r) => r.model));
  const groups = groupColumns(table.columns);
  const best = bestRows(table, discarded);
  const ref = table.rows[0];

  const top = h(doc, "tr", { class: "onthefly-compare-groups" }, h(doc, "th", { scope: "col", rowspan: 2, class: "onthefly-compare-model-head" }, "model"));
  const sub = h(doc, "tr", { class: "onthefly-compare-metrics" });
  const ordered: CompareColumn[] = [];
  for (const g of groups) {
    if (g.target === "") {
      const col = g.columns[0]!;
      top.append(h(doc, "th", { scope: "col", rowspan: 2, class: "onthefly-compare-group onthefly-compare-first", "data-column": col.name }, col.label));
      ordered.push(col);
      continue;
    }
    const [prefix, name] = targetParts(g.target);
    top.append(
      h(doc, "th", { scope: "colgroup", colspan: g.columns.length, class: "onthefly-compare-group onthefly-compare-first", "data-target": g.target, title: g.target },
        prefix ? h(doc, "span", { class: "onthefly-compare-prefix" }, prefix) : "",
        prefix ? " " : "",
        name),
    );
    g.columns.forEach((col, i) => {
      sub.append(h(doc, "th", { scope: "col", class: i === 0 ? "onthefly-compare-first" : undefined, "data-column": col.name, "data-metric": col.metric }, col.label));
      ordered.push(col);
    });
  }

  const body = h(doc, "tbody", {});
  table.rows.forEach((row, r) => {
    const node = byId.get(row.model);
    const tr = h(doc, "tr", { "data-model": row.model, "data-kind": node?.kind, "data-state": node?.state || undefined });
    const kind = node ? (node.kind === "merge" && node.state ? `${node.state} merge` : node.kind) : "";
    tr.append(
      h(doc, "th", { scope: "row", class: "onthefly-compare-model", title: row.model },
        h(doc, "span", { class: "onthefly-compare-name" }, row.model),
        kind ? h(doc, "span", { class: "onthefly-compare-kind" }, kind) : ""),
    );
    for (const col of ordered) {
      const v = row.values[col.index] ?? null;
      const isBest = best[col.index]?.has(r) ?? false;
      let title = `${col.name}: ${v == null ? "no value" : String(Number(v.toPrecision(6)))}`;
      const base = ref && r > 0 ? ref.values[col.index] : null;
      if (v != null && base != null && col.metric !== "other") title += ` (${fmtDelta(col.metric, v, base)} vs ${ref!.model})`;
      const first = groups.some((g) => g.columns[0] === col);
      tr.append(
        h(doc, "td", {
          class: [first ? "onthefly-compare-first" : "", isBest ? "onthefly-compare-best" : ""].filter(Boolean).join(" ") || undefined,
          "data-column": col.name,
          "data-best": isBest || undefined,
          title,
        }, fmtMetric(col.metric, v)),
      );
    }
    body.append(tr);
  });

  return h(doc, "table", { class: "onthefly-compare-table" }, h(doc, "thead", {}, top, sub), body);
}
