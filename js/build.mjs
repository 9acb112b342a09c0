// Builds the anywidget front-end module.
//   node js/build.mjs           one-off production build
//   node js/build.mjs --watch   rebuild on change (pair with ANYWIDGET_HMR=1)
// Output: onthefly_nb/static/widget.js and onthefly_nb/static/widget.css (the anywidget
// module), and onthefly_nb/static/standalone.js (the page the WebSocket bridge serves).
import { mkdir } from "node:fs/promises";
import { dirname, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const outdir = resolve(root, "onthefly_nb", "static");
const watch = process.argv.includes("--watch");

await mkdir(outdir, { recursive: true });

const logPlugin = {
  name: "onthefly-log",
  setup(build) {
    build.onEnd((result) => {
      const n = result.errors.length;
      const when = new Date().toLocaleTimeString();
      const out = relative(root, build.initialOptions.outfile ?? outdir);
      console.log(n ? `[${when}] ${out}: build failed (${n} error${n > 1 ? "s" : ""})` : `[${when}] built ${out}`);
    });
  },
};

const common = {
  bundle: true,
  minify: true,
  sourcemap: watch ? "inline" : false,
  target: "es2022",
  logLevel: "warning",
  plugins: [logPlugin],
};

/** @type {import("esbuild").BuildOptions[]} */
const configs = [
  {
    ...common,
    entryPoints: [resolve(root, "js/widget.ts")],
    outfile: resolve(outdir, "widget.js"),
    format: "esm",
    platform: "browser",
    // UMD dependencies must not register with a host's global AMD loader
    // (classic notebook, VS Code's widget webview).
    define: { "define.amd": "false" },
  },
  {
    ...common,
    // The standalone dashboard page of onthefly_nb/bridge.py (served with widget.css).
    entryPoints: [resolve(root, "js/transport/standalone.ts")],
    outfile: resolve(outdir, "standalone.js"),
    format: "esm",
    platform: "browser",
    define: { "define.amd": "false" },
  },
  {
    ...common,
    // The frozen final dashboard a display becomes when its run ends (onthefly_nb/outputs/frozen.py).
    entryPoints: [resolve(root, "js/frozen.ts")],
    outfile: resolve(outdir, "frozen.js"),
    format: "iife",
    platform: "browser",
    define: { "define.amd": "false" },
  },
  {
    ...common,
    sourcemap: false,
    entryPoints: [resolve(root, "js/widget.css")],
    outfile: resolve(outdir, "widget.css"),
  },
];

if (watch) {
  const contexts = await Promise.all(configs.map((c) => esbuild.context(c)));
  await Promise.all(contexts.map((ctx) => ctx.watch()));
  console.log("watching js/ for changes…");
} else {
  await Promise.all(configs.map((c) => esbuild.build(c)));
}
