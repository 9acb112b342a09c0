// The dashboard. `mountDashboard` is the single entry point every host calls (anywidget's
// `render`, the standalone page, VS Code's renderer). It knows the panels only through their
// definitions (panels/panel.ts, listed in panels/index.ts): a trait change marks the panels
// that read it dirty, and one animation frame redraws them.

import type { DashboardModel, Listener } from "./model/host";
import { Liveness } from "./model/liveness";
import type { TraitName } from "./model/types";
import { createChannel } from "./panels/channel";
import { GRID_PANELS, TOP_PANELS } from "./panels/index";
import type { Panel, PanelContext, PanelDef } from "./panels/panel";
import { h } from "./ui/dom";
import { readTheme, watchTheme } from "./ui/theme";

export type { DashboardModel } from "./model/host";
export { SELECT_EVENT } from "./panels/map";

export interface MountOptions {
  /** Draw a saved final state (ms since the epoch it was saved): no kernel, controls off. */
  savedAt?: number;
}

/**
 * Renders the dashboard for `model` into `el` and keeps it live. Returns a cleanup function
 * that detaches every listener, disposes of the panels (the WebGL map with them) and empties `el`.
 */
export function mountDashboard(el: HTMLElement, model: DashboardModel, options: MountOptions = {}): () => void {
  const doc = el.ownerDocument;
  const win: Window = doc.defaultView ?? window;
  const dom = new AbortController();
  const channel = createChannel(dom.signal);
  const root = h(doc, "div", { class: "onthefly-root" });

  // ---- what needs redrawing: per panel, the traits changed since its last update
  const dirty = new Map<PanelDef, Set<TraitName>>();
  let themeDirty = true;
  let frame = 0;
  let disposed = false;
  const schedule = () => {
    if (disposed || frame) return;
    frame = win.requestAnimationFrame(flush);
  };
  const mark = (def: PanelDef, trait?: TraitName) => {
    let changed = dirty.get(def);
    if (!changed) dirty.set(def, (changed = new Set()));
    if (trait) changed.add(trait);
    schedule();
  };

  // ---- widths the panels draw to; a resize also retries a theme read the page was not ready for
  const widths = new Map<Element, { width: number; onWidth: (width: number) => void }>();
  const RO = (win as Window & { ResizeObserver?: typeof ResizeObserver }).ResizeObserver;
  const observer = RO
    ? new RO((entries) => {
        for (const entry of entries) {
          const watch = widths.get(entry.target);
          const w = Math.round(entry.contentRect.width);
          if (!watch || w <= 0 || w === watch.width) continue;
          watch.width = w;
          watch.onWidth(w);
        }
        if (themeDirty) schedule();
      })
    : null;
  observer?.observe(root);

  // ---- the panels, in page order
  const panels: Array<[PanelDef, Panel]> = [];
  const create = (def: PanelDef): HTMLElement => {
    const ctx: PanelContext = {
      doc,
      model: { get: (trait) => model.get(trait) },
      send: (content, buffers) => (buffers ? model.send(content, undefined, buffers) : model.send(content)),
      signal: dom.signal,
      host: el,
      root,
      channel,
      invalidate: () => mark(def),
      watchWidth: (target, onWidth) => {
        widths.set(target, { width: 0, onWidth });
        observer?.observe(target);
      },
    };
    const panel = def.create(ctx);
    panels.push([def, panel]);
    dirty.set(def, new Set(def.traits)); // the first paint draws everything
    return panel.el;
  };
  root.append(...TOP_PANELS.map(create), h(doc, "div", { class: "onthefly-panels" }, ...GRID_PANELS.map(create)));
  el.replaceChildren(root);

  const themed = panels.filter(([, panel]) => panel.setTheme);
  const applyTheme = () => {
    if (!root.isConnected) return; // computed styles need the page; retried on resize
    themeDirty = false;
    const theme = readTheme(root);
    for (const [, panel] of themed) panel.setTheme!(theme);
  };

  const flush = () => {
    frame = 0;
    if (disposed) return;
    for (const [def, panel] of panels) {
      const changed = dirty.get(def);
      if (!changed) continue;
      dirty.delete(def);
      try {
        panel.update(changed);
      } catch (err) {
        console.error(`[onthefly] failed to render ${def.name}:`, err);
      }
    }
    if (!themeDirty || themed.length === 0) return;
    try {
      applyTheme();
    } catch (err) {
      console.error("[onthefly] failed to render theme:", err);
    }
  };

  // ---- model listeners, one per trait some panel reads (kept so that cleanup can pass the same references to off)
  const readers = new Map<TraitName, PanelDef[]>();
  for (const [def] of panels) {
    for (const trait of def.traits) readers.set(trait, [...(readers.get(trait) ?? []), def]);
  }
  // ---- whether the kernel is there: every message counts; silence for a few seconds does not
  const liveness = new Liveness(Date.now());
  const heard = () => liveness.seen(Date.now());
  const checkLiveness = () => {
    const connection = liveness.check(Date.now());
    if (!connection || disposed) return;
    root.dataset.connection = connection.live ? "live" : "lost";
    channel.emit("connection", connection);
  };
  const modelListeners: Array<[string, Listener]> = [...readers].map(([trait, defs]) => [
    `change:${trait}`,
    () => {
      heard();
      for (const def of defs) mark(def, trait);
    },
  ]);
  modelListeners.push(["msg:custom", heard], ["close", () => (liveness.close(), checkLiveness())]);
  const livenessTimer = win.setInterval(checkLiveness, 500);
  for (const [event, cb] of modelListeners) model.on(event, cb);
  const stopWatchingTheme = watchTheme(doc, () => {
    themeDirty = true;
    schedule();
  });

  // First paint synchronously, so the widget is never blank.
  flush();
  if (options.savedAt !== undefined) {
    win.clearInterval(livenessTimer);
    root.dataset.connection = "saved";
    channel.emit("connection", { live: false, lastSeen: options.savedAt, saved: true });
  }

  return () => {
    if (disposed) return;
    disposed = true;
    for (const [event, cb] of modelListeners) model.off(event, cb);
    observer?.disconnect();
    win.clearInterval(livenessTimer);
    stopWatchingTheme();
    if (frame) win.cancelAnimationFrame(frame);
    frame = 0;
    dom.abort();
    for (const [def, panel] of panels) {
      try {
        panel.dispose?.();
      } catch (err) {
        console.error(`[onthefly] failed to dispose of ${def.name}:`, err);
      }
    }
    el.replaceChildren();
  };
}
