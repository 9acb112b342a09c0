// Unit tests of the front end's pure modules (decoders, normalisers, formatters,
// colour scales, selection encoding, the WebSocket transport) and of the VS Code
// extension's relay (widgets/). Run with `npm test`.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["js/test/**/*.test.ts", "widgets/test/**/*.test.ts"],
    environment: "node",
  },
});
