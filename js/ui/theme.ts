// Theme colours for what CSS cannot style (the WebGL sample map): read from the
// dashboard's CSS variables, which follow JupyterLab, then VS Code, then light defaults.

import { type Rgba, luminance, parseColor } from "./colors";

export interface Theme {
  /** Panel background. */
  bg: Rgba;
  fg: Rgba;
  muted: Rgba;
  faint: Rgba;
  border: Rgba;
  brand: Rgba;
  warn: Rgba;
  dark: boolean;
}

const VARS: Record<Exclude<keyof Theme, "dark">, string> = {
  bg: "--onthefly-panel-bg",
  fg: "--onthefly-fg",
  muted: "--onthefly-fg-muted",
  faint: "--onthefly-fg-faint",
  border: "--onthefly-border",
  brand: "--onthefly-brand",
  warn: "--onthefly-warn",
};

const FALLBACK: Rgba = [0.5, 0.5, 0.5, 1];

/** Resolves any CSS colour to RGBA by painting it (for syntaxes `parseColor` does not know). */
function paint(doc: Document, css: string): Rgba | null {
  const ctx = doc.createElement("canvas").getContext("2d", { willReadFrequently: true });
  if (!ctx) return null;
  ctx.clearRect(0, 0, 1, 1);
  ctx.fillStyle = css;
  ctx.fillRect(0, 0, 1, 1);
  const [r, g, b, a] = ctx.getImageData(0, 0, 1, 1).data;
  return [r! / 255, g! / 255, b! / 255, a! / 255];
}

/** The theme as seen from `el` (a node inside `.onthefly-root`). */
export function readTheme(el: HTMLElement): Theme {
  const doc = el.ownerDocument;
  const probe = doc.createElement("span");
  probe.style.display = "none";
  el.appendChild(probe);
  const out = { dark: false } as Theme;
  const view = doc.defaultView ?? window;
  try {
    for (const [key, name] of Object.entries(VARS) as Array<[keyof typeof VARS, string]>) {
      probe.style.color = `var(${name})`;
      const css = view.getComputedStyle(probe).color;
      out[key] = parseColor(css) ?? paint(doc, css) ?? FALLBACK;
    }
  } finally {
    probe.remove();
  }
  // A translucent panel background shows the page behind it; judge darkness by the text.
  out.dark = out.bg[3] > 0.5 ? luminance(out.bg) < 0.35 : luminance(out.fg) > 0.5;
  return out;
}

/**
 * Calls `onChange` when the host may have switched themes: JupyterLab toggles
 * `data-jp-theme-*` on body, VS Code swaps body classes and the html style, and the OS
 * may switch its colour scheme. Returns the function that stops watching.
 */
export function watchTheme(doc: Document, onChange: () => void): () => void {
  const observer = new MutationObserver(onChange);
  const attributeFilter = ["class", "style", "data-jp-theme-light", "data-jp-theme-name", "data-vscode-theme-kind"];
  observer.observe(doc.documentElement, { attributes: true, attributeFilter });
  if (doc.body) observer.observe(doc.body, { attributes: true, attributeFilter });
  const media = doc.defaultView?.matchMedia?.("(prefers-color-scheme: dark)");
  media?.addEventListener("change", onChange);
  return () => {
    observer.disconnect();
    media?.removeEventListener("change", onChange);
  };
}
