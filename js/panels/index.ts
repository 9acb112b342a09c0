// The dashboard's panels, in the order they appear. To add one: write its module (a
// PanelDef, see panel.ts) and list it here; the traits it reads come from the Python side.

import { clustersPanel } from "./clusters";
import { comparePanel } from "./compare";
import { connectionPanel } from "./connection";
import { controlsPanel } from "./controls";
import { errorPanel } from "./error";
import { eventsPanel } from "./events";
import { headerPanel } from "./header";
import { healthPanel } from "./health";
import { histogramPanel } from "./histogram";
import { hyperparametersPanel } from "./hyperparameters";
import { lineagePanel } from "./lineage";
import { lossPanel } from "./loss";
import { mapPanel } from "./map";
import { metricsPanel } from "./metrics";
import { noticePanel } from "./notice";
import { outputPanel } from "./output";
import type { PanelDef } from "./panel";
import { plansPanel } from "./plans";
import { progressPanel } from "./progress";

/** Full width above the grid: the run's header, its progress, a lost connection, the toolbar, the error box
 * and notices. */
export const TOP_PANELS: readonly PanelDef[] = [
  headerPanel,
  progressPanel,
  connectionPanel,
  controlsPanel,
  errorPanel,
  noticePanel,
];

/** The cards of the panel grid. */
export const GRID_PANELS: readonly PanelDef[] = [
  lossPanel,
  metricsPanel,
  histogramPanel,
  mapPanel,
  plansPanel,
  healthPanel,
  hyperparametersPanel,
  clustersPanel,
  lineagePanel,
  comparePanel,
  eventsPanel,
  outputPanel,
];
