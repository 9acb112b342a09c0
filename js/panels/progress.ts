// The progress bar under the header (`run` trait): steps done of the run's total steps (its
// epochs, or fewer when max_steps bounds it), hidden while the run's length is unknown (none set).

import { normalizeRun } from "../model/normalize";
import type { RunInfo } from "../model/types";
import { h } from "../ui/dom";
import { fmtCount } from "../ui/format";
import type { PanelDef } from "./panel";

/** How far the run has come, in percent (100 once finished); null while its length is unknown. */
export function progressPercent(run: RunInfo): number | null {
  if (run.total_steps === null || run.total_steps <= 0) return null;
  return run.state === "finished" ? 100 : Math.max(0, Math.min(100, (100 * run.step) / run.total_steps));
}

export const progressPanel: PanelDef = {
  name: "progress",
  traits: ["run"],
  create(ctx) {
    const doc = ctx.doc;
    const bar = h(doc, "div", { class: "onthefly-progress-bar" });
    const el = h(
      doc,
      "div",
      { class: "onthefly-progress", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100, hidden: true },
      bar,
    );
    return {
      el,
      update() {
        const run = normalizeRun(ctx.model.get("run"));
        const pct = progressPercent(run);
        el.hidden = pct === null;
        if (pct === null) return;
        el.dataset.state = run.state;
        el.setAttribute("aria-valuenow", pct.toFixed(1));
        el.title = `${run.step} / ${run.total_steps} steps · ${fmtCount(run.seen)} samples seen`;
        bar.style.width = `${pct}%`;
      },
    };
  },
};
