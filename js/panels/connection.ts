// The banner that says the dashboard lost its kernel (restarted, shut down, a script that ended):
// when the last update came, that the controls are off, and that what is shown is the last state.

import { h } from "../ui/dom";
import { fmtClock } from "../ui/format";
import type { PanelDef } from "./panel";

export const connectionPanel: PanelDef = {
  name: "connection",
  traits: [],
  create(ctx) {
    const el = h(ctx.doc, "div", { class: "onthefly-disconnected", role: "status", hidden: true });
    ctx.channel.on("connection", ({ live, lastSeen }) => {
      el.hidden = live;
      const when = lastSeen === null ? "no update came" : `the last update came at ${fmtClock(lastSeen / 1000)}`;
      el.textContent = live ? "" : `Disconnected from the kernel: ${when}. This is the last state; controls are off.`;
    });
    return { el, update: () => undefined };
  },
};
