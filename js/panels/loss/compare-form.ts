// "Compare with a saved run": a path on the kernel's machine (a browser cannot name one of its
// files) sent as an `overlay` message; the run's median then joins the loss chart (`overlays`
// trait). The form says why the kernel refused a path (a `rejected_message` event).

import type { Message } from "../../model/messages";
import { rejectionAfter } from "../../model/normalize";
import type { RunEvent } from "../../model/types";
import { h } from "../../ui/dom";

export interface CompareForm {
  el: HTMLElement;
  /** Reads the latest events and overlay names: shows a refusal, or clears the field once shown. */
  update(events: readonly RunEvent[] | null, overlays: readonly string[]): void;
}

export function compareForm(doc: Document, send: (m: Message) => void, signal: AbortSignal): CompareForm {
  const path = h(doc, "input", {
    type: "text", class: "onthefly-compare-path", placeholder: "runs/baseline.zip",
    "aria-label": "Path of a saved session on the kernel's machine", spellcheck: "false",
  });
  const overlay = h(doc, "button", { type: "submit", class: "onthefly-btn" }, "Overlay");
  const clear = h(doc, "button", { type: "button", class: "onthefly-btn", hidden: true }, "Remove overlays");
  const status = h(doc, "span", { class: "onthefly-hp-status", role: "status" });
  const form = h(doc, "form", { class: "onthefly-compare-form" }, path, overlay, clear, status);
  const el = h(doc, "details", { class: "onthefly-compare-details" },
    h(doc, "summary", {}, "Compare with a saved run"), form);
  let sentAfter: number | null = null; // the newest event seq when a path was sent
  let newest = -1;

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const value = path.value.trim();
    if (!value) return;
    send({ type: "overlay", path: value });
    sentAfter = newest;
    status.textContent = "opening…";
    status.dataset.state = "pending";
  }, { signal });
  clear.addEventListener("click", () => send({ type: "overlay", path: "" }), { signal });

  return {
    el,
    update(events, overlays) {
      clear.hidden = overlays.length === 0;
      if (events) {
        const refusal = sentAfter === null ? undefined : rejectionAfter(events, sentAfter, "overlay");
        if (refusal) {
          status.textContent = String(refusal.reason ?? "refused");
          status.dataset.state = "refused";
          sentAfter = null;
        }
        for (const e of events) newest = Math.max(newest, e.seq);
      }
      if (sentAfter !== null && overlays.length > 0 && status.dataset.state === "pending") {
        status.textContent = `overlaid: ${overlays[overlays.length - 1]}`;
        status.dataset.state = "done";
        path.value = "";
        sentAfter = null;
      }
    },
  };
}
