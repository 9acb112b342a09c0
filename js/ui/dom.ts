// Tiny DOM builders shared by the panels.

type Attrs = Record<string, string | number | boolean | undefined | null>;

const SVG_NS = "http://www.w3.org/2000/svg";

function setAttrs(node: Element, attrs: Attrs): void {
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    node.setAttribute(k, v === true ? "" : String(v));
  }
}

/** An HTML element with attributes (false/null/undefined are skipped, true is "") and children. */
export function h<K extends keyof HTMLElementTagNameMap>(
  doc: Document,
  tag: K,
  attrs: Attrs = {},
  ...children: Array<Node | string>
): HTMLElementTagNameMap[K] {
  const node = doc.createElement(tag);
  setAttrs(node, attrs);
  node.append(...children);
  return node;
}

/** An SVG element, appended to `parent` when given. */
export function s<K extends keyof SVGElementTagNameMap>(
  doc: Document,
  tag: K,
  attrs: Attrs = {},
  parent?: Element,
): SVGElementTagNameMap[K] {
  const node = doc.createElementNS(SVG_NS, tag);
  setAttrs(node, attrs);
  if (parent) parent.appendChild(node);
  return node;
}

/** A small filled SVG icon from a 14×14 path. */
export function icon(doc: Document, path: string, size = 12): SVGSVGElement {
  const svg = s(doc, "svg", {
    class: "onthefly-icon",
    viewBox: "0 0 14 14",
    width: size,
    height: size,
    "aria-hidden": "true",
    focusable: "false",
  });
  s(doc, "path", { d: path }, svg);
  return svg;
}

/** A dashboard panel: a titled card with a tools slot and a body. */
export interface Panel {
  el: HTMLElement;
  title: HTMLElement;
  tools: HTMLElement;
  body: HTMLElement;
}

export function panel(doc: Document, name: string, title: string, extraClass = ""): Panel {
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
