// The `scalars` trait as charts: the measured gauges grouped by what they measure (every
// learning rate in one chart, host and device memory in one), each logged scalar and each
// validation figure in a chart of its own.

import type { ScalarSeries } from "../../model/contract";
import { isObject } from "../../model/guards";
import { finitePairs } from "../../model/normalize";

export interface Series {
  name: string;
  logged: boolean;
  steps: Float64Array;
  values: Float64Array;
}

export interface ChartSpec {
  title: string;
  series: Series[];
}

/** The series of the trait, dropping malformed points. */
export function normalizeScalars(v: unknown): Series[] {
  if (!Array.isArray(v)) return [];
  const out: Series[] = [];
  for (const raw of v) {
    if (!isObject(raw) || typeof raw.name !== "string" || !Array.isArray(raw.points)) continue;
    const points = finitePairs(raw.points);
    out.push({
      name: raw.name,
      logged: (raw as Partial<ScalarSeries>).group === "logged",
      steps: Float64Array.from(points, (p) => p[0]),
      values: Float64Array.from(points, (p) => p[1]),
    });
  }
  return out;
}

/** Which chart a measured series goes in (series of one chart share its y axis). */
function chartOf(name: string): string {
  if (name === "lr" || name.startsWith("lr/")) return "learning rate";
  if (name.includes("memory")) return "memory (MB)";
  return name;
}

/** Charts in a fixed order: learning rate, gradient norm, throughput, memory, GPU, then
 * validation and test figures, then the logged scalars (by name). */
export function chartsOf(series: readonly Series[]): ChartSpec[] {
  const order = ["learning rate", "grad norm", "samples/s", "memory (MB)", "gpu utilisation (%)"];
  const byTitle = new Map<string, Series[]>();
  for (const s of series) {
    const title = s.logged ? s.name : chartOf(s.name);
    byTitle.set(title, [...(byTitle.get(title) ?? []), s]);
  }
  const rank = (title: string, logged: boolean) => {
    const known = order.indexOf(title);
    if (known >= 0) return known;
    return logged ? order.length + 2 : order.length + 1;
  };
  return [...byTitle.entries()]
    .map(([title, list]) => ({ title, series: list }))
    .sort((a, b) => rank(a.title, a.series[0]!.logged) - rank(b.title, b.series[0]!.logged)
      || a.title.localeCompare(b.title));
}
