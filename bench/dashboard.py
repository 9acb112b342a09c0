"""How fast the dashboard front end draws and absorbs updates, in headless Chromium.

Loads tests/browser/harness.html (the bundle with a fake model; build it first with
``npm run build``) from a local http.server over the repository root, and measures:

- the sample map's first render with 1,000,000 points: from setting the ``points`` trait to
  the first frame that shows them (cold: the first points of a new view, which also creates
  the WebGL scatterplot; warm: a new ``points`` version in the same view);
- how many full dashboard updates a second the page renders: ``run`` + ``curve`` (1,000 rows)
  + ``histogram`` (60 bins) set together, with the million points on the map. "paced" waits
  for each update to be drawn before sending the next; "flood" sends them as fast as the
  page takes them, where updates between two frames coalesce into one render.

WebGL runs on SwiftShader (the CPU), so the map figures are an upper bound for a real GPU.
Then ``bench/payload.py`` measures the kernel side: bytes per update and updates per second
while a run with a 10,000,000-sample store trains.

    .venv/bin/python bench/dashboard.py [--points 1000000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import payload  # noqa: E402  (bench/payload.py)
from jupyter_helpers import CHROMIUM, CHROMIUM_ARGS, WEBGL_ARGS, serve_repo  # noqa: E402
from playwright.sync_api import Page, sync_playwright  # noqa: E402

VIEWPORT = {"width": 1200, "height": 900}

# Sets `points` to n synthetic points (built before the clock starts) and resolves with
# the time until the map's first frame with them.
MAP_RENDER_JS = """
async ([n, version]) => {
  const points = { ...window.demoPoints(n, 2 * n, version), version };
  const map = document.querySelector('.onthefly-map');
  const drawn = new Promise((resolve) =>
    map.addEventListener('onthefly-map-drawn', (e) => resolve(e.detail), { once: true }));
  const t0 = performance.now();
  window.fakeModel.update('points', points);
  const detail = await drawn;
  return { ms: performance.now() - t0, n: detail.n };
}
"""

# Pushes run + curve + histogram updates for `seconds`; counts updates, frames and renders
# (a render is a change of the step shown in the header).
UPDATE_RATE_JS = """
async ([seconds, paced]) => {
  const rows = 1000, cols = ["step", "p5", "p25", "p50", "p75", "p95", "mean"];
  const base = window.demoState();
  const step = document.querySelector('.onthefly-step');
  let renders = 0, frames = 0, updates = 0, running = true;
  new MutationObserver(() => renders++).observe(step, { attributes: true, attributeFilter: ['data-step'] });
  const tick = () => { if (!running) return; frames++; requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
  const nextFrame = () => new Promise((r) => requestAnimationFrame(() => r()));
  const yieldTask = () => new Promise((r) => setTimeout(r, 0));
  const push = (k) => {
    const data = new Float32Array(rows * 7);
    for (let i = 0; i < rows; i++) {
      const s = k + i, m = 2 * Math.exp(-s / 800) + 0.1;
      data.set([s, m * 0.4, m * 0.7, m, m * 1.3, m * 2, m * 1.1], i * 7);
    }
    const counts = base.histogram.counts.map((c) => c + (k % 7));
    window.fakeModel.update('run', { ...base.run, step: 3000 + k });
    window.fakeModel.update('curve', { n: rows, columns: cols, data: new DataView(data.buffer) });
    window.fakeModel.update('histogram', { ...base.histogram, counts });
    updates++;
  };
  await nextFrame();
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000) {
    push(updates + 1);
    await (paced ? nextFrame() : yieldTask());
  }
  await nextFrame();
  running = false;
  const s = (performance.now() - t0) / 1000;
  return { updates: updates / s, frames: frames / s, renders: renders / s };
}
"""


@contextlib.contextmanager
def open_harness(url: str) -> Iterator[Page]:
    """A fresh Chromium page on the harness with one dashboard mounted and nothing set."""
    profile = tempfile.mkdtemp(prefix="onthefly-bench-")
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                profile, executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS + WEBGL_ARGS,
                viewport=VIEWPORT,
            )
            try:
                page = context.new_page()
                page.goto(f"{url}/tests/browser/harness.html")
                page.wait_for_function("() => window.harnessReady === true")
                yield page
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def bench_map_first_render(page: Page, n: int, repeats: int = 3) -> dict[str, float]:
    """Milliseconds from setting `points` (n points) to the first frame showing them."""
    cold = page.evaluate(MAP_RENDER_JS, [n, 1])["ms"]
    warm = [page.evaluate(MAP_RENDER_JS, [n, v])["ms"] for v in range(2, 2 + repeats)]
    return {"cold_ms": cold, "warm_ms": statistics.median(warm)}


def bench_update_rate(page: Page, seconds: float) -> dict[str, dict[str, float]]:
    """Updates, frames and renders per second, paced by frames and flooding."""
    return {
        "paced": page.evaluate(UPDATE_RATE_JS, [seconds, True]),
        "flood": page.evaluate(UPDATE_RATE_JS, [seconds, False]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--samples", type=int, default=10_000_000, help="store size for the payload measurement")
    args = parser.parse_args()
    if not (ROOT / "onthefly_nb" / "static" / "widget.js").exists():
        sys.exit("onthefly_nb/static/widget.js is missing: run `npm run build` first")
    if not CHROMIUM.exists():
        sys.exit(f"{CHROMIUM} is missing (make chromium)")

    with serve_repo() as url, open_harness(url) as page:
        renderer = page.evaluate(
            "() => { const gl = document.createElement('canvas').getContext('webgl'); if (!gl) return 'none';"
            " const info = gl.getExtension('WEBGL_debug_renderer_info');"
            " const r = gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER);"
            " gl.getExtension('WEBGL_lose_context')?.loseContext(); return r; }"
        )
        print(f"WebGL renderer: {renderer}")
        first = bench_map_first_render(page, args.points)
        print(f"sample map, {args.points:,} points: first render {first['cold_ms']:.0f} ms cold (new view), "
              f"{first['warm_ms']:.0f} ms warm (new points version, median of 3)")
        rates = bench_update_rate(page, args.seconds)
        for mode, r in rates.items():
            print(f"updates ({mode}): {r['updates']:.1f} pushed/s, {r['renders']:.1f} rendered/s, "
                  f"{r['frames']:.1f} frames/s (run + 1,000-row curve + 60-bin histogram each, "
                  f"{args.points:,} points on the map)")
    # what the kernel sends: bytes per update while a run with a 10M-sample store trains
    payload.report(payload.measure(args.samples, args.seconds))


if __name__ == "__main__":
    main()
