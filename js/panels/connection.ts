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
    ctx.channel.on("connection", ({ live, lastSeen, saved }) => {
      el.hidden = live;
      const at = lastSeen === null ? "" : fmtClock(lastSeen / 1000);
      if (live) el.textContent = "";
      else if (saved) {
        el.textContent = `The run's final state, saved when it ended (${at}); it is not connected to a kernel, so the ` +
          "controls are off. In a live kernel, display(session.dashboard()) shows a live dashboard.";
      } else {
        const when = lastSeen === null ? "no update came" : `the last update came at ${at}`;
        el.textContent = `Disconnected from the kernel: ${when}. This is the last state; controls are off.`;
      }
    });
    return { el, update: () => undefined };
  },
};
