// The compare panel: the table of the `compare` trait (compare/table.ts), its models' kind and
// state from `lineage`, and a Compare button, enabled by the run state (`run`), that asks
// Python to recompute the table.

import type { Command } from "../model/messages";
import { normalizeCompare, normalizeLineage, normalizeRun } from "../model/normalize";
import type { CompareTable, LineageNode, RunState } from "../model/types";
import { h, icon } from "../ui/dom";
import { renderCompareTable } from "./compare/table";
import { type PanelDef, type PanelFrame, emptyState, panelFrame } from "./panel";

const COMPARE_ICON = "M2 11.5h2.5V6H2zm3.75 0h2.5V2.5h-2.5zm3.75 0H12V8H9.5z";
const PENDING_MS = 15_000;

/** The panel's table, empty state and the Compare button (pending until the table changes). */
class CompareView {
  readonly frame: PanelFrame;
  private readonly doc: Document;
  private readonly win: Window;
  private readonly button: HTMLButtonElement;
  private readonly buttonLabel: HTMLElement;
  private readonly note: HTMLElement;
  private readonly empty: HTMLElement;
  private readonly wrap: HTMLElement;
  private readonly hint: HTMLElement;
  private state: RunState = "idle";
  private pendingTimer = 0;

  constructor(doc: Document, send: (cmd: Command) => void, signal: AbortSignal) {
    this.doc = doc;
    this.win = doc.defaultView ?? window;
    this.frame = panelFrame(doc, "compare", "Compare", "onthefly-panel-wide onthefly-compare");
    this.note = h(doc, "span", { class: "onthefly-panel-note", hidden: true },
      h(doc, "span", { class: "onthefly-compare-swatch" }), "best: lowest loss, highest accuracy");
    this.buttonLabel = h(doc, "span", { class: "onthefly-btn-label" }, "Compare");
    this.button = h(
      doc,
      "button",
      {
        type: "button",
        class: "onthefly-btn onthefly-compare-btn",
        "data-command": "compare",
        title: "Evaluate the run, its experts and merge candidates on each slice and on validation now",
        disabled: true,
      },
      icon(doc, COMPARE_ICON),
      this.buttonLabel,
    );
    this.button.addEventListener(
      "click",
      () => {
        if (this.button.disabled) return;
        send({ type: "command", name: "compare" });
        this.setPending(true);
      },
      { signal },
    );
    this.frame.tools.append(this.note, this.button);
    this.empty = emptyState(doc, "fork a specialist to compare it with the run");
    this.wrap = h(doc, "div", { class: "onthefly-table-wrap", hidden: true });
    this.hint = h(doc, "p", { class: "onthefly-compare-hint", hidden: true }, "fork a specialist to compare it with the run");
    this.frame.body.append(this.empty, this.wrap, this.hint);
  }

  /** Compare runs at a step boundary, or at once once the run has ended; not before it starts. */
  setRunState(state: RunState): void {
    this.state = state;
    this.syncButton();
  }

  update(table: CompareTable | null, nodes: readonly LineageNode[], fresh: boolean): void {
    if (fresh) this.setPending(false);
    const rows = table?.rows.length ?? 0;
    this.empty.hidden = rows > 0;
    this.wrap.hidden = rows === 0;
    this.note.hidden = rows < 2;
    this.hint.hidden = rows !== 1;
    this.wrap.replaceChildren(...(table && rows ? [renderCompareTable(this.doc, table, nodes)] : []));
  }

  dispose(): void {
    if (this.pendingTimer) this.win.clearTimeout(this.pendingTimer);
    this.pendingTimer = 0;
  }

  private setPending(on: boolean): void {
    if (this.pendingTimer) this.win.clearTimeout(this.pendingTimer);
    this.pendingTimer = 0;
    if (on) {
      this.button.dataset.pending = "true";
      this.button.setAttribute("aria-busy", "true");
      this.buttonLabel.textContent = "Comparing…";
      // Python sends nothing when the table came out the same: give the button back after a while.
      this.pendingTimer = this.win.setTimeout(() => this.setPending(false), PENDING_MS);
    } else {
      delete this.button.dataset.pending;
      this.button.removeAttribute("aria-busy");
      this.buttonLabel.textContent = "Compare";
    }
    this.syncButton();
  }

  private syncButton(): void {
    this.button.disabled = this.state === "idle" || this.button.dataset.pending === "true";
  }
}

export const comparePanel: PanelDef = {
  name: "compare",
  traits: ["run", "lineage", "compare"],
  create(ctx) {
    const view = new CompareView(ctx.doc, (cmd) => ctx.send(cmd), ctx.signal);
    let lineage: LineageNode[] = [];
    let value: unknown = undefined;
    return {
      el: view.frame.el,
      update(changed) {
        if (changed.has("run")) view.setRunState(normalizeRun(ctx.model.get("run")).state);
        if (changed.has("lineage")) lineage = normalizeLineage(ctx.model.get("lineage"));
        if (!changed.has("lineage") && !changed.has("compare")) return;
        // a new value (not a lineage change) answers a pending Compare click
        const next = ctx.model.get("compare");
        view.update(normalizeCompare(next), lineage, next !== value);
        value = next;
      },
      dispose: () => view.dispose(),
    };
  },
};
