// The progress bar under the header (`run` trait): steps done of max_epochs × steps_per_epoch,
// hidden while the run's length is unknown.

import { normalizeRun } from "../model/normalize";
import { h } from "../ui/dom";
import { fmtCount } from "../ui/format";
import type { PanelDef } from "./panel";

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
        const total = run.max_epochs != null && run.steps_per_epoch > 0 ? run.max_epochs * run.steps_per_epoch : 0;
        el.hidden = total <= 0;
        if (total <= 0) return;
        const pct = run.state === "finished" ? 100 : Math.max(0, Math.min(100, (100 * run.step) / total));
        el.dataset.state = run.state;
        el.setAttribute("aria-valuenow", pct.toFixed(1));
        el.title = `${run.step} / ${total} steps · ${fmtCount(run.seen)} samples seen`;
        bar.style.width = `${pct}%`;
      },
    };
  },
};
