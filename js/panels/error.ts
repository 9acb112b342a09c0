// The error box under the toolbar (`run` trait): the traceback of a failed run.

import { normalizeRun } from "../model/normalize";
import { h } from "../ui/dom";
import type { PanelDef } from "./panel";

export const errorPanel: PanelDef = {
  name: "error",
  traits: ["run"],
  create(ctx) {
    const el = h(ctx.doc, "pre", { class: "onthefly-error", role: "alert", hidden: true });
    return {
      el,
      update() {
        const run = normalizeRun(ctx.model.get("run"));
        const failed = run.state === "failed";
        el.hidden = !failed;
        el.textContent = failed ? run.error || "Training failed (no traceback was reported)." : "";
      },
    };
  },
};
