// Tiny DOM builders shared by the panels: HTML and SVG elements, icons.

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

/** `node` with its inline style set through the CSSOM (allowed where a CSP refuses style attributes). */
export function styled<T extends HTMLElement>(node: T, css: string): T {
  node.style.cssText = css;
  return node;
}
