// What a dashboard panel is to `mountDashboard`: a definition (name, traits read, factory)
// that builds a Panel from a PanelContext. Also the chrome the grid's panels share: a
// titled card with a tools slot and a body, and the muted empty state.

import type { Message } from "../model/messages";
import type { TraitName } from "../model/types";
import { h } from "../ui/dom";
import type { Theme } from "../ui/theme";
import type { Channel } from "./channel";

/** One kind of panel: a module exports one, panels/index.ts lists them in order. */
export interface PanelDef {
  /** For logs; the grid's cards also carry it as `data-panel`. */
  readonly name: string;
  /** The traits the panel reads: a change of any of them redraws it in the next frame. */
  readonly traits: readonly TraitName[];
  create(ctx: PanelContext): Panel;
}

/** A panel of one mounted dashboard. */
export interface Panel {
  /** Its element; the dashboard places it (above the grid or in it, see index.ts). */
  readonly el: HTMLElement;
  /**
   * Redraws from the model. `changed` holds the traits that changed since the last call:
   * all of the definition's the first time, none when the panel asked with `invalidate`.
   */
  update(changed: ReadonlySet<TraitName>): void;
  /** Colours for what CSS cannot style (WebGL): first paint, then whenever the host's theme may have changed. */
  setTheme?(theme: Theme): void;
  /** Frees what the context's signal does not: timers, WebGL contexts. */
  dispose?(): void;
}

/** What the dashboard gives each panel. */
export interface PanelContext {
  readonly doc: Document;
  /** Trait values as the host holds them (raw: normalise or decode before use). */
  readonly model: { get(trait: TraitName): unknown };
  /** Sends a message to Python, with binary buffers when given. */
  send(content: Message, buffers?: ArrayBuffer[]): void;
  /** Aborted when the dashboard is unmounted: pass it to addEventListener. */
  readonly signal: AbortSignal;
  /** The element the host mounted the dashboard into; DOM events for the host are dispatched on it. */
  readonly host: HTMLElement;
  /** The dashboard's `.onthefly-root` element. */
  readonly root: HTMLElement;
  /** Messages between panels, for interactions that cross them. */
  readonly channel: Channel;
  /** Asks for `update` (with no trait changed) in the next frame. */
  invalidate(): void;
  /** Calls `onWidth` with the content width of `el` (rounded, positive) each time it changes. */
  watchWidth(el: Element, onWidth: (width: number) => void): void;
}

/** A card of the panel grid: its section, the title, the header's tools slot and the body. */
export interface PanelFrame {
  el: HTMLElement;
  title: HTMLElement;
  tools: HTMLElement;
  body: HTMLElement;
}

export function panelFrame(doc: Document, name: string, title: string, extraClass = ""): PanelFrame {
  const titleEl = h(doc, "h3", { class: "onthefly-panel-title" }, title);
  const tools = h(doc, "div", { class: "onthefly-panel-tools" });
  const body = h(doc, "div", { class: "onthefly-panel-body" });
  const el = h(
    doc,
    "section",
    { class: `onthefly-panel ${extraClass}`.trim(), "data-panel": name, "aria-label": title },
    h(doc, "header", { class: "onthefly-panel-head" }, titleEl, tools),
    body,
  );
  return { el, title: titleEl, tools, body };
}

/** The muted message a panel shows before it has data. */
export function emptyState(doc: Document, text: string, extraClass = ""): HTMLElement {
  return h(doc, "div", { class: `onthefly-empty-state ${extraClass}`.trim() }, text);
}
