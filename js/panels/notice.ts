// A notice under the toolbar (`run` trait): what the dashboard cannot show for this run and why
// (per-sample views are off for a loss that cannot be split per sample).

import { normalizeRun } from "../model/normalize";
import { h } from "../ui/dom";
import type { PanelDef } from "./panel";

export const noticePanel: PanelDef = {
  name: "notice",
  traits: ["run"],
  create(ctx) {
    const el = h(ctx.doc, "p", { class: "onthefly-notice", role: "status", hidden: true });
    return {
      el,
      update() {
        const off = normalizeRun(ctx.model.get("run")).per_sample_off;
        el.hidden = off === null;
        el.textContent = off === null ? "" : `Per-sample views are off for this run: ${off}`;
      },
    };
  },
};
