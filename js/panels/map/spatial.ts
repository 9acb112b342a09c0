// The sample map's spatial index, in the KDBush v1 format that regl-scatterplot reads
// (`draw(points, {spatialIndex})`). Built from typed arrays, off the main thread when a
// Worker can be started, so a million points do not block the page.

const NODE_SIZE = 16;

/**
 * A KDBush index (Float32 coordinates) of the points, as its serialised ArrayBuffer.
 * Self-contained (no outside references) so that it can run as the worker's source.
 */
export function buildKdIndex(x: ArrayLike<number>, y: ArrayLike<number>, nodeSize: number): ArrayBuffer {
  const n = Math.min(x.length, y.length);
  const idsBytes = n * (n < 65536 ? 2 : 4);
  const pad = (8 - (idsBytes % 8)) % 8;
  const data = new ArrayBuffer(8 + idsBytes + pad + n * 8);
  new Uint8Array(data, 0, 2).set([0xdb, (1 << 4) + 7]); // magic, version 1, Float32Array
  new Uint16Array(data, 2, 1)[0] = nodeSize;
  new Uint32Array(data, 4, 1)[0] = n;
  const ids = n < 65536 ? new Uint16Array(data, 8, n) : new Uint32Array(data, 8, n);
  const coords = new Float32Array(data, 8 + idsBytes + pad, n * 2);
  for (let i = 0; i < n; i++) {
    ids[i] = i;
    coords[2 * i] = x[i]!;
    coords[2 * i + 1] = y[i]!;
  }
  const swapItem = (i: number, j: number) => {
    let t = ids[i]!;
    ids[i] = ids[j]!;
    ids[j] = t;
    t = coords[2 * i]!;
    coords[2 * i] = coords[2 * j]!;
    coords[2 * j] = t;
    t = coords[2 * i + 1]!;
    coords[2 * i + 1] = coords[2 * j + 1]!;
    coords[2 * j + 1] = t;
  };
  // Floyd–Rivest selection, as in KDBush, so that the output is byte-identical.
  const select = (k: number, left: number, right: number, axis: number): void => {
    while (right > left) {
      if (right - left > 600) {
        const m = k - left + 1;
        const len = right - left + 1;
        const z = Math.log(len);
        const s = 0.5 * Math.exp((2 * z) / 3);
        const sd = 0.5 * Math.sqrt((z * s * (len - s)) / len) * (m - len / 2 < 0 ? -1 : 1);
        select(k, Math.max(left, Math.floor(k - (m * s) / len + sd)), Math.min(right, Math.floor(k + ((len - m) * s) / len + sd)), axis);
      }
      const t = coords[2 * k + axis]!;
      let i = left;
      let j = right;
      swapItem(left, k);
      if (coords[2 * right + axis]! > t) swapItem(left, right);
      while (i < j) {
        swapItem(i, j);
        i++;
        j--;
        while (coords[2 * i + axis]! < t) i++;
        while (coords[2 * j + axis]! > t) j--;
      }
      if (coords[2 * left + axis] === t) swapItem(left, j);
      else {
        j++;
        swapItem(j, right);
      }
      if (j <= k) left = j + 1;
      if (k <= j) right = j - 1;
    }
  };
  const sort = (left: number, right: number, axis: number): void => {
    if (right - left <= nodeSize) return;
    const m = (left + right) >> 1;
    select(m, left, right, axis);
    sort(left, m - 1, 1 - axis);
    sort(m + 1, right, 1 - axis);
  };
  sort(0, n - 1, 0);
  return data;
}

const WORKER_SOURCE = `const build = ${buildKdIndex.toString()};
onmessage = (e) => { const d = build(e.data.x, e.data.y, e.data.nodeSize); postMessage(d, [d]); };`;

/** Builds the index in a Worker; on the main thread when no Worker can be started. */
export function spatialIndex(x: Float32Array, y: Float32Array, win: Window = window): Promise<ArrayBuffer> {
  const local = () => buildKdIndex(x, y, NODE_SIZE);
  const scope = win as Window & { Worker?: typeof Worker; URL: typeof URL };
  const W = scope.Worker;
  if (!W || x.length < 50000) return Promise.resolve(local());
  return new Promise((resolve) => {
    let worker: Worker;
    try {
      const url = scope.URL.createObjectURL(new Blob([WORKER_SOURCE], { type: "text/javascript" }));
      worker = new W(url, { name: "onthefly-kdbush" });
      scope.URL.revokeObjectURL(url);
    } catch {
      resolve(local());
      return;
    }
    worker.onmessage = (e: MessageEvent<ArrayBuffer>) => {
      worker.terminate();
      resolve(e.data);
    };
    worker.onerror = (e) => {
      e.preventDefault();
      worker.terminate();
      resolve(local());
    };
    worker.postMessage({ x, y, nodeSize: NODE_SIZE });
  });
}
