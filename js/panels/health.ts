// The health checks (`health` trait): one row per check, failures first; the panel's
// `data-worst` is the worst status.

import { normalizeHealth } from "../model/normalize";
import type { Health, HealthStatus } from "../model/types";
import { h } from "../ui/dom";
import { fmtClock } from "../ui/format";
import { type PanelDef, emptyState, panelFrame } from "./panel";

const SEVERITY: Record<HealthStatus, number> = { fail: 0, warn: 1, pass: 2 };

/** Counts of each status. */
function healthSummary(health: Health | null): Record<HealthStatus, number> {
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

export const healthPanel: PanelDef = {
  name: "health",
  traits: ["health"],
  create(ctx) {
    const doc = ctx.doc;
    const frame = panelFrame(doc, "health", "Health");
    const list = h(doc, "ul", { class: "onthefly-health-list" });
    const note = h(doc, "span", { class: "onthefly-panel-note" });
    const empty = emptyState(doc, "no health check yet");
    frame.tools.append(note);
    frame.body.append(empty, list);
    return {
      el: frame.el,
      update() {
        const health = normalizeHealth(ctx.model.get("health"));
        renderHealth(list, note, health);
        empty.hidden = health !== null;
        const counts = healthSummary(health);
        frame.el.dataset.worst = counts.fail ? "fail" : counts.warn ? "warn" : health ? "pass" : "none";
      },
    };
  },
};
