// The run header (`run` trait): project / run name, status pill, step and epoch, learning
// rate, throughput, time left, device and the "deterministic" badge.

import { normalizeRun } from "../model/normalize";
import type { RunInfo, RunState } from "../model/types";
import { h } from "../ui/dom";
import { fmtDuration, fmtLr, fmtRate } from "../ui/format";
import type { PanelDef } from "./panel";

const TERMINAL: ReadonlySet<RunState> = new Set(["finished", "stopped", "failed"]);

function stepText(run: RunInfo): string {
  const epoch = run.max_epochs != null ? `${run.epoch}/${run.max_epochs}` : `${run.epoch}`;
  return `step ${run.step} · epoch ${epoch}`;
}

export class Header {
  readonly el: HTMLElement;
  private readonly project: HTMLElement;
  private readonly runName: HTMLElement;
  private readonly sep: HTMLElement;
  private readonly status: HTMLElement;
  private readonly step: HTMLElement;
  private readonly lr: HTMLElement;
  private readonly throughput: HTMLElement;
  private readonly eta: HTMLElement;
  private readonly device: HTMLElement;
  /** In the header only while `run.deterministic` is true. */
  private readonly deterministic: HTMLElement;

  constructor(doc: Document) {
    this.project = h(doc, "span", { class: "onthefly-project" });
    this.runName = h(doc, "span", { class: "onthefly-run-name" });
    this.sep = h(doc, "span", { class: "onthefly-sep", "aria-hidden": "true" }, "/");
    this.status = h(doc, "span", { class: "onthefly-status", "data-state": "idle", role: "status" }, "idle");
    this.step = h(doc, "span", { class: "onthefly-step onthefly-stat", "data-step": "0" });
    this.lr = h(doc, "span", { class: "onthefly-lr onthefly-stat", title: "current learning rate" });
    this.throughput = h(doc, "span", { class: "onthefly-throughput onthefly-stat", title: "samples per second" });
    this.eta = h(doc, "span", { class: "onthefly-eta onthefly-stat", title: "estimated time remaining" });
    this.device = h(doc, "span", { class: "onthefly-device onthefly-stat", title: "device" });
    this.deterministic = h(
      doc,
      "span",
      {
        class: "onthefly-badge onthefly-deterministic",
        "data-deterministic": "true",
        title: "torch.use_deterministic_algorithms is on; seeds fixed",
      },
      "deterministic",
    );
    this.el = h(
      doc,
      "div",
      { class: "onthefly-header" },
      h(doc, "div", { class: "onthefly-title" }, this.project, this.sep, this.runName),
      this.status,
      h(doc, "div", { class: "onthefly-meta" }, this.step, this.lr, this.throughput, this.eta, this.device),
    );
  }

  render(run: RunInfo): void {
    this.project.textContent = run.project || "onthefly";
    this.runName.textContent = run.run_name;
    this.sep.hidden = this.runName.hidden = !run.run_name;
    this.status.dataset.state = run.state;
    this.status.textContent = run.state;
    this.step.dataset.step = String(run.step);
    this.step.textContent = stepText(run);
    this.lr.textContent = `lr ${fmtLr(run.lr)}`;
    this.lr.hidden = run.lr === null;
    this.throughput.textContent = `${fmtRate(run.samples_per_sec)} samples/s`;
    this.throughput.hidden = run.samples_per_sec == null;
    this.eta.textContent = `ETA ${fmtDuration(run.eta_sec)}`;
    this.eta.hidden = run.eta_sec == null || TERMINAL.has(run.state);
    this.device.textContent = run.device;
    this.device.hidden = !run.device;
    if (!run.deterministic) this.deterministic.remove();
    else if (this.deterministic.parentNode !== this.el) this.status.after(this.deterministic);
  }
}

export const headerPanel: PanelDef = {
  name: "header",
  traits: ["run"],
  create(ctx) {
    const header = new Header(ctx.doc);
    return { el: header.el, update: () => header.render(normalizeRun(ctx.model.get("run"))) };
  },
};
