// What the process printed while the run was live (`output` trait): stdout and stderr lines,
// warnings among them, oldest first; it follows the newest line unless the user scrolled up.

import { isObject } from "../model/guards";
import { h } from "../ui/dom";
import { fmtClock } from "../ui/format";
import { type PanelDef, emptyState, panelFrame } from "./panel";

interface Line {
  time: number;
  stream: string;
  text: string;
}

function normalizeOutput(v: unknown): Line[] {
  if (!Array.isArray(v)) return [];
  return v
    .filter(isObject)
    .filter((l) => typeof l.text === "string")
    .map((l) => ({ time: Number(l.time) || 0, stream: l.stream === "stderr" ? "stderr" : "stdout", text: String(l.text) }));
}

const FOLLOW_PX = 8; // scrolled this close to the bottom: keep following new lines

export const outputPanel: PanelDef = {
  name: "output",
  traits: ["output"],
  create(ctx) {
    const { doc } = ctx;
    const frame = panelFrame(doc, "output", "Output", "onthefly-panel-wide");
    const list = h(doc, "ol", { class: "onthefly-output", "aria-label": "What the run printed" });
    const empty = emptyState(doc, "nothing printed while the run was live");
    frame.body.append(empty, list);
    return {
      el: frame.el,
      update() {
        const lines = normalizeOutput(ctx.model.get("output"));
        const following = list.scrollHeight - list.scrollTop - list.clientHeight <= FOLLOW_PX;
        list.replaceChildren(
          ...lines.map((l) =>
            h(doc, "li", { class: "onthefly-output-line", "data-stream": l.stream },
              h(doc, "span", { class: "onthefly-event-time" }, fmtClock(l.time)),
              h(doc, "span", { class: "onthefly-output-text" }, l.text)),
          ),
        );
        empty.hidden = lines.length > 0;
        if (following) list.scrollTop = list.scrollHeight;
      },
    };
  },
};
