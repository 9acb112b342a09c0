// anywidget front-end module (AFM). Nothing heavy runs at import time: the
// dashboard is built in `render`, once per view.

import type { AnyWidget } from "@anywidget/types";
import { mountDashboard } from "./dashboard";

export default {
  render({ model, el }) {
    return mountDashboard(el, model);
  },
} satisfies AnyWidget;

export { mountDashboard };
export type { DashboardModel } from "./dashboard";
