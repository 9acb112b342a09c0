// anywidget front-end module (AFM). Nothing heavy runs at import time: the
// dashboard is built in `render`, once per view, its messages going by a command comm
// where the host allows one (transport/commands.ts).

import type { AnyWidget } from "@anywidget/types";
import { mountDashboard } from "./dashboard";
import { withCommandComm } from "./transport/commands";

export default {
  render({ model, el }) {
    const [commanded, closeComm] = withCommandComm(model);
    const unmount = mountDashboard(el, commanded);
    return () => {
      unmount();
      closeComm();
    };
  },
} satisfies AnyWidget;

export { mountDashboard };
export type { DashboardModel } from "./dashboard";
