import { describe, expect, it } from "vitest";
import { TRAIT_NAMES } from "../../model/types";
import { createChannel } from "../../panels/channel";
import { GRID_PANELS, TOP_PANELS } from "../../panels/index";

describe("panel list", () => {
  const all = [...TOP_PANELS, ...GRID_PANELS];

  it("names each panel once", () => {
    const names = all.map((p) => p.name);
    expect(new Set(names).size).toBe(names.length);
  });

  it("reads every trait, each panel only the ones it lists once", () => {
    expect(new Set(all.flatMap((p) => p.traits))).toEqual(new Set(TRAIT_NAMES));
    for (const p of all) expect(new Set(p.traits).size).toBe(p.traits.length);
  });
});

describe("panel channel", () => {
  it("delivers to every listener until the dashboard's signal aborts", () => {
    const abort = new AbortController();
    const channel = createChannel(abort.signal);
    const got: number[] = [];
    channel.on("selectCluster", (c) => got.push(c));
    channel.on("selectCluster", (c) => got.push(c * 10));
    channel.emit("selectCluster", 3);
    abort.abort();
    channel.emit("selectCluster", 4);
    channel.on("selectCluster", (c) => got.push(c));
    channel.emit("selectCluster", 5);
    expect(got).toEqual([3, 30]);
  });
});
