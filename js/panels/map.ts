// The sample map panel (`points`, `selection` traits): the WebGL map (map/sample-map.ts) in
// a card with its tools. A selection made on the map, or by a click in the cluster table,
// goes to Python as a `select` message and is announced on the mount element.

import { selectMessage } from "../model/messages";
import { decodeSelection } from "../model/points";
import { SampleMap } from "./map/sample-map";
import { type PanelDef, panelFrame } from "./panel";

/** Fired on the mount element with `detail.indices` each time a selection is sent to Python. */
export const SELECT_EVENT = "onthefly-select";

export const mapPanel: PanelDef = {
  name: "map",
  traits: ["points", "selection"],
  create(ctx) {
    const frame = panelFrame(ctx.doc, "map", "Sample map");
    const map = new SampleMap(ctx.doc, {
      onSelect: (indices) => {
        const msg = selectMessage(indices);
        ctx.send(msg.content, msg.buffers);
        // what went to Python, for hosts and tests to observe
        ctx.host.dispatchEvent(new CustomEvent(SELECT_EVENT, { bubbles: true, detail: { indices: Array.from(indices) } }));
      },
    });
    frame.tools.append(map.tools);
    frame.body.append(map.el);
    ctx.channel.on("selectCluster", (cluster) => map.selectCluster(cluster));
    return {
      el: frame.el,
      update(changed) {
        if (changed.has("points")) map.setPoints(ctx.model.get("points"));
        if (changed.has("selection")) map.setSelection(decodeSelection(ctx.model.get("selection")));
      },
      setTheme: (theme) => map.setTheme(theme),
      dispose: () => map.destroy(),
    };
  },
};
