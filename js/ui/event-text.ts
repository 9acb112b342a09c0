// Run events (`events` trait) as text: the event log's detail line and the tooltips of
// the loss chart's event markers.

import type { RunEvent } from "../model/types";
import { fmtClock, fmtNum, fmtPercent } from "./format";

const EVENT_BASE_KEYS = new Set(["seq", "time", "step", "kind"]);
const EVENT_KEY_LABELS: Record<string, string> = { accuracy: "acc" };

/** The extra fields of an event as short text ("loss 0.5 · acc 80.0%"). */
export function eventDetail(e: RunEvent): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(e)) {
    if (EVENT_BASE_KEYS.has(k) || v == null) continue;
    const label = EVENT_KEY_LABELS[k] ?? k.replace(/_/g, " ");
    let text: string;
    if (typeof v === "number") text = k === "accuracy" ? fmtPercent(v) : fmtNum(v);
    else if (typeof v === "string") text = v;
    else if (typeof v === "boolean") text = String(v);
    else {
      try {
        text = JSON.stringify(v);
      } catch {
        text = String(v);
      }
    }
    if (text.length > 120) text = `${text.slice(0, 117)}…`;
    parts.push(k === "message" ? text : `${label} ${text}`);
  }
  return parts.join(" · ");
}

/** Tooltip of an event marker on the loss chart. */
export function markerLabel(e: RunEvent): string {
  const detail = eventDetail(e);
  const time = fmtClock(e.time);
  return `${e.kind} @ step ${e.step}${time ? ` (${time})` : ""}${detail ? `\n${detail}` : ""}`;
}
