// One regl-scatterplot renderer (one WebGL context) shared by every sample map on the
// page, reference-counted: browsers allow only ~16 live contexts, and each display() of
// the widget is a new view. The last release destroys it and loses the context.

import { createRenderer } from "regl-scatterplot";

export type Renderer = ReturnType<typeof createRenderer>;

let shared: { renderer: Renderer; refs: number } | null = null;

/** The shared renderer; throws when WebGL is unavailable. Pair with `releaseRenderer`. */
export function acquireRenderer(): Renderer {
  if (!shared || shared.renderer.isDestroyed) {
    const renderer = createRenderer();
    if (!renderer.isSupported) console.warn("[onthefly] WebGL lacks extensions the sample map needs; it may look wrong.");
    shared = { renderer, refs: 0 };
  }
  shared.refs++;
  return shared.renderer;
}

export function releaseRenderer(renderer: Renderer): void {
  if (!shared || shared.renderer !== renderer) return;
  shared.refs--;
  if (shared.refs > 0) return;
  shared = null;
  const gl = (renderer.regl as unknown as { _gl?: WebGLRenderingContext })._gl;
  renderer.destroy();
  gl?.getExtension("WEBGL_lose_context")?.loseContext();
}
