// Builds the VS Code extension into widgets/out/ (widgets/ is then a .vsix-ready folder):
//   out/renderer.js   the notebook renderer (ESM, runs in the notebook webview)
//   out/extension.js  the relay in the extension host (CommonJS, `vscode` external)
//   node widgets/build.mjs [--watch]
import { dirname, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const outdir = resolve(here, "out");
const watch = process.argv.includes("--watch");

const logPlugin = {
  name: "onthefly-log",
  setup(build) {
    build.onEnd((result) => {
      const n = result.errors.length;
      const out = relative(resolve(here, ".."), build.initialOptions.outfile);
      console.log(n ? `${out}: build failed (${n} error${n > 1 ? "s" : ""})` : `built ${out}`);
    });
  },
};

const common = {
  bundle: true,
  minify: !watch,
  sourcemap: watch ? "inline" : false,
  logLevel: "warning",
  plugins: [logPlugin],
};

/** @type {import("esbuild").BuildOptions[]} */
const configs = [
  {
    ...common,
    entryPoints: [resolve(here, "src/renderer.ts")],
    outfile: resolve(outdir, "renderer.js"),
    format: "esm",
    platform: "browser",
    target: "es2022",
    loader: { ".css": "text" },
    define: { "define.amd": "false" },
  },
  {
    ...common,
    entryPoints: [resolve(here, "src/extension.ts")],
    outfile: resolve(outdir, "extension.js"),
    format: "cjs",
    platform: "node",
    target: "node18",
    // `ws` loads these native speed-ups only if they are installed
    external: ["vscode", "bufferutil", "utf-8-validate"],
  },
];

if (watch) {
  const contexts = await Promise.all(configs.map((c) => esbuild.context(c)));
  await Promise.all(contexts.map((ctx) => ctx.watch()));
  console.log("watching widgets/src and js/ for changes…");
} else {
  await Promise.all(configs.map((c) => esbuild.build(c)));
}
