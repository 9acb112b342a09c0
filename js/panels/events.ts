// The event log (`events` trait), newest first.

import { normalizeEvents } from "../model/normalize";
import type { RunEvent } from "../model/types";
import { h } from "../ui/dom";
import { eventDetail } from "../ui/event-text";
import { fmtClock } from "../ui/format";
import { type PanelDef, emptyState, panelFrame } from "./panel";

/** The event log, newest first. */
function renderEvents(list: HTMLElement, events: readonly RunEvent[]): void {
  const doc = list.ownerDocument;
  list.replaceChildren(
    ...[...events].reverse().map((e) =>
      h(
        doc,
        "li",
        { class: "onthefly-event", "data-kind": e.kind, "data-seq": e.seq },
        h(doc, "span", { class: "onthefly-event-time" }, fmtClock(e.time)),
        h(doc, "span", { class: "onthefly-event-kind" }, e.kind.replace(/_/g, " ")),
        h(doc, "span", { class: "onthefly-event-step" }, `step ${e.step}`),
        h(doc, "span", { class: "onthefly-event-detail", title: eventDetail(e) }, eventDetail(e)),
      ),
    ),
  );
}

export const eventsPanel: PanelDef = {
  name: "events",
  traits: ["events"],
  create(ctx) {
    const doc = ctx.doc;
    const frame = panelFrame(doc, "events", "Events", "onthefly-panel-wide onthefly-events-box");
    const list = h(doc, "ol", { class: "onthefly-events", "aria-label": "Recent events" });
    const empty = emptyState(doc, "no events yet");
    frame.body.append(empty, list);
    return {
      el: frame.el,
      update() {
        const events = normalizeEvents(ctx.model.get("events"));
        renderEvents(list, events);
        empty.hidden = events.length > 0;
      },
    };
  },
};
