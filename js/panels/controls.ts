// The training controls: pause, resume, stop, run n steps, validate, test, health check,
// determinism check and session export, each enabled by the run state (`run` trait).
// Buttons keep their `data-command` attribute; each click sends one `command` message. A button
// stays pending (`data-pending`, disabled) until the kernel confirms: the run state it leads to,
// or an event that reports it (`events` trait); so a double click sends one command. Stop asks
// for a second click to confirm.

import type { CommandName as AnyCommand, Command } from "../model/messages";
import { normalizeEvents, normalizeRun } from "../model/normalize";
import type { EventKind, RunEvent, RunState } from "../model/types";
import { h, icon } from "../ui/dom";
import type { PanelDef } from "./panel";

/** The commands with a button here: every command of the contract but "compare" (the compare panel's). */
export type ControlCommand = Exclude<AnyCommand, "compare">;

const ICONS: Record<ControlCommand, string> = {
  pause: "M3 2h3v10H3zM8 2h3v10H8z",
  resume: "M3 1.5v11l9-5.5z",
  stop: "M2.5 2.5h9v9h-9z",
  step: "M2 1.5v11l7-5.5zM10 2h2v10h-2z",
  validate: "M5.5 10.2 2.3 7l-1.1 1.1 4.3 4.3 7.3-7.3-1.1-1.1z",
  test: "M5 1.5h4v1H8.5v3.2l3.3 5.6c.4.7-.1 1.7-1 1.7H3.2c-.9 0-1.4-1-1-1.7l3.3-5.6V2.5H5zm1.5 1v3.5L5 8.5h4L7.5 6V2.5z",
  health: "M7 12.5 1.9 7.6C.4 6.1.6 3.6 2.4 2.5c1.4-.9 3.2-.6 4.3.6L7 3.4l.3-.3c1.1-1.2 2.9-1.5 4.3-.6 1.8 1.1 2 3.6.5 5.1z",
  // a replay arrow around an equals sign
  determinism: "M7 1.5A5.5 5.5 0 1 1 1.5 7H3a4 4 0 1 0 4-4zM0 7h4.5L2.25 3.8zM5.5 5.6h3v1h-3zm0 1.8h3v1h-3z",
  // a download arrow over a tray
  export: "M6 1.5h2v5.3l2-2 1.4 1.4L7 10.6 2.6 6.2 4 4.8l2 2zM2 11.5h10V13H2z",
};

const BUTTONS: ReadonlyArray<[ControlCommand, string, string]> = [
  ["pause", "Pause", "Pause training after the current step"],
  ["resume", "Resume", "Resume training"],
  ["stop", "Stop", "Stop training"],
  ["step", "Step", "Run this many steps, then pause"],
  ["validate", "Validate", "Evaluate on the validation set now"],
  ["test", "Test", "Evaluate on the test set now"],
  ["health", "Health check", "Check the run for common training problems now"],
  ["determinism", "Determinism", "Replay the last step twice and compare losses and gradients bit for bit"],
  ["export", "Export", "Save the whole session to a .zip beside the notebook (Session.load continues it)"],
];

const ENDED: RunState[] = ["stopping", "finished", "stopped", "failed"];
/** What confirms each command: a run state it leads to, or a later event that reports it. */
const CONFIRMED_BY: Record<ControlCommand, { states: RunState[]; events: EventKind[] }> = {
  pause: { states: ["paused", ...ENDED], events: [] },
  resume: { states: ["running", ...ENDED], events: [] },
  stop: { states: ENDED, events: [] },
  step: { states: ENDED, events: ["paused", "command_failed"] },
  validate: { states: [], events: ["validation", "command_failed", "failed"] },
  test: { states: [], events: ["test", "command_failed", "failed"] },
  health: { states: [], events: ["health", "command_failed", "failed"] },
  determinism: { states: [], events: ["determinism", "command_failed", "failed"] },
  export: { states: [], events: ["exported", "export_failed", "command_failed"] },
};
export const PENDING_MS = 60_000; // a command not confirmed by then is given up on
export const CONFIRM_STOP_MS = 4_000;

/**
 * Which commands make sense in a run state. Evaluations and the health check still work once
 * the run has ended (the health check after a failure too: it says what broke); the
 * determinism check replays a step, so it needs one to have run; an export is refused only
 * while the run is winding down.
 */
export function enabledCommands(state: RunState): Record<ControlCommand, boolean> {
  const active = state === "running" || state === "paused";
  const ended = state === "finished" || state === "stopped";
  return {
    pause: state === "running",
    resume: state === "paused",
    stop: active,
    step: active,
    validate: active || ended,
    test: active || ended,
    health: active || ended || state === "failed",
    determinism: active || ended,
    export: state !== "stopping",
  };
}

export class Controls {
  readonly el: HTMLElement;
  private readonly buttons = new Map<ControlCommand, HTMLButtonElement>();
  private readonly labels = new Map<ControlCommand, HTMLElement>();
  private readonly stepN: HTMLInputElement;
  private readonly pending = new Map<ControlCommand, { seq: number; at: number }>();
  private lastSeq = -1; // the newest event seen
  private state: RunState = "idle";
  private live = true;
  private stopArmedUntil = 0;

  constructor(
    doc: Document,
    send: (cmd: Command) => void,
    signal: AbortSignal,
    private readonly now: () => number = Date.now,
  ) {
    const button = (cmd: ControlCommand, label: string, tip: string) => {
      const text = h(doc, "span", { class: "onthefly-btn-label" }, label);
      const b = h(
        doc,
        "button",
        { type: "button", class: "onthefly-btn", "data-command": cmd, "aria-label": label, title: tip, disabled: true },
        icon(doc, ICONS[cmd]),
        text,
      );
      this.buttons.set(cmd, b);
      this.labels.set(cmd, text);
      return b;
    };
    this.stepN = h(doc, "input", {
      type: "number",
      class: "onthefly-step-n",
      value: 10,
      min: 1,
      step: 1,
      inputmode: "numeric",
      "aria-label": "Number of steps",
      title: "number of steps",
      disabled: true,
    });
    const [pause, resume, stop, step, validate, test, health, determinism, exportBtn] = BUTTONS.map(([c, l, t]) =>
      button(c, l, t),
    );
    this.el = h(
      doc,
      "div",
      { class: "onthefly-controls", role: "toolbar", "aria-label": "Training controls" },
      h(doc, "span", { class: "onthefly-btn-group" }, pause!, resume!, stop!),
      h(doc, "span", { class: "onthefly-step-group" }, this.stepN, step!),
      h(doc, "span", { class: "onthefly-btn-group" }, validate!, test!, health!, determinism!),
      h(doc, "span", { class: "onthefly-btn-group onthefly-export-group" }, exportBtn!),
    );

    const sendStep = () => {
      const n = Math.floor(Number(this.stepN.value));
      if (!Number.isFinite(n) || n < 1) {
        this.stepN.setAttribute("aria-invalid", "true");
        return;
      }
      this.stepN.removeAttribute("aria-invalid");
      send({ type: "command", name: "step", n });
      this.markPending("step");
    };
    for (const [cmd, b] of this.buttons) {
      b.addEventListener(
        "click",
        () => {
          if (b.disabled) return;
          if (cmd === "step") return sendStep();
          if (cmd === "stop" && this.now() >= this.stopArmedUntil) {
            this.stopArmedUntil = this.now() + CONFIRM_STOP_MS; // the first click arms it
            b.dataset.confirm = "true";
            this.labels.get("stop")!.textContent = "Confirm stop";
            const disarm = setTimeout(() => this.disarmStop(), CONFIRM_STOP_MS);
            signal.addEventListener("abort", () => clearTimeout(disarm), { once: true });
            return;
          }
          if (cmd === "stop") this.disarmStop();
          send({ type: "command", name: cmd });
          this.markPending(cmd);
        },
        { signal },
      );
    }
    this.stepN.addEventListener("input", () => this.stepN.removeAttribute("aria-invalid"), { signal });
    this.stepN.addEventListener(
      "keydown",
      (ev) => {
        if (ev.key === "Enter" && !this.buttons.get("step")!.disabled) {
          ev.preventDefault();
          sendStep();
        }
      },
      { signal },
    );
  }

  /** Enables the commands that make sense in ``state`` and are not pending; none while the kernel
   * is not there. ``events`` (when they changed) confirm pending commands. */
  render(state: RunState, live = true, events?: readonly RunEvent[]): void {
    this.state = state;
    this.live = live;
    const now = this.now();
    for (const [cmd, p] of this.pending) {
      const by = CONFIRMED_BY[cmd];
      const reported = events?.some((e) => e.seq > p.seq && by.events.includes(e.kind)) ?? false;
      if (by.states.includes(state) || reported || now - p.at >= PENDING_MS) this.pending.delete(cmd);
    }
    if (events?.length) this.lastSeq = Math.max(this.lastSeq, ...events.map((e) => e.seq));
    const enabled = enabledCommands(state);
    for (const [cmd, b] of this.buttons) {
      const pending = this.pending.has(cmd);
      b.disabled = !live || !enabled[cmd] || pending;
      if (pending) b.dataset.pending = "true";
      else b.removeAttribute("data-pending");
      b.setAttribute("aria-busy", String(pending));
    }
    this.stepN.disabled = !live || !enabled.step;
  }

  private markPending(cmd: ControlCommand): void {
    this.pending.set(cmd, { seq: this.lastSeq, at: this.now() });
    this.render(this.state, this.live);
  }

  private disarmStop(): void {
    this.stopArmedUntil = 0;
    this.buttons.get("stop")!.removeAttribute("data-confirm");
    this.labels.get("stop")!.textContent = "Stop";
  }
}

export const controlsPanel: PanelDef = {
  name: "controls",
  traits: ["run", "events"],
  create(ctx) {
    const controls = new Controls(ctx.doc, (cmd) => ctx.send(cmd), ctx.signal);
    let live = true;
    const update = (changed?: ReadonlySet<string>) => {
      const events = !changed || changed.has("events") ? normalizeEvents(ctx.model.get("events")) : undefined;
      controls.render(normalizeRun(ctx.model.get("run")).state, live, events);
    };
    ctx.channel.on("connection", (connection) => {
      live = connection.live;
      update();
    });
    return { el: controls.el, update };
  },
};
