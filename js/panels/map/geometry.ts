// Where the sample map puts its points: coordinates fitted to the scatterplot's view, and
// the order they are drawn in.

import { UNCLUSTERED } from "../../model/points";

/**
 * Normalised device coordinates for the scatterplot: the bounding box of the finite
 * points, centred and scaled (keeping the aspect ratio) so that its longer side spans
 * [-pad, pad]. Non-finite coordinates are parked far outside the view.
 */
export function fitToNdc(x: Float32Array, y: Float32Array, pad = 0.9): { x: Float32Array; y: Float32Array } {
  const n = Math.min(x.length, y.length);
  let x0 = Infinity;
  let x1 = -Infinity;
  let y0 = Infinity;
  let y1 = -Infinity;
  for (let i = 0; i < n; i++) {
    const a = x[i]!;
    const b = y[i]!;
    if (!Number.isFinite(a) || !Number.isFinite(b)) continue;
    if (a < x0) x0 = a;
    if (a > x1) x1 = a;
    if (b < y0) y0 = b;
    if (b > y1) y1 = b;
  }
  const ox = new Float32Array(n);
  const oy = new Float32Array(n);
  if (!(x1 >= x0)) return { x: ox.fill(1e6), y: oy.fill(1e6) };
  const cx = (x0 + x1) / 2;
  const cy = (y0 + y1) / 2;
  const span = Math.max(x1 - x0, y1 - y0);
  const s = span > 0 ? (2 * pad) / span : 1;
  for (let i = 0; i < n; i++) {
    const a = x[i]!;
    const b = y[i]!;
    const ok = Number.isFinite(a) && Number.isFinite(b);
    ox[i] = ok ? (a - cx) * s : 1e6;
    oy[i] = ok ? (b - cy) * s : 1e6;
  }
  return { x: ox, y: oy };
}

/** Draw order of the points: the unclustered first, so the clustered hard samples end up on top. */
export function drawOrder(cluster: Uint16Array): Uint32Array {
  const order = new Uint32Array(cluster.length);
  let k = 0;
  for (let i = 0; i < cluster.length; i++) if (cluster[i] === UNCLUSTERED) order[k++] = i;
  for (let i = 0; i < cluster.length; i++) if (cluster[i] !== UNCLUSTERED) order[k++] = i;
  return order;
}
