// The toolbar, the header badge and the health list against a tiny fake DOM (vitest
// runs in node here; the browser tests cover the real one).
import { describe, expect, it } from "vitest";
import type { Command } from "../../model/messages";
import { normalizeHealth, normalizeRun } from "../../model/normalize";
import { RUN_STATES, type RunEvent, type RunState } from "../../model/types";
import { CONFIRM_STOP_MS, type ControlCommand, Controls, enabledCommands, PENDING_MS } from "../../panels/controls";
import { Header } from "../../panels/header";
import { renderHealth } from "../../panels/health";

// --- a fake DOM: just what dom.ts, controls.ts, header.ts and health.ts touch ------------

type Child = FakeElement | FakeText;

class FakeText {
  parentNode: FakeElement | null = null;
  constructor(public textContent: string) {}
}

const toData = (key: string) => `data-${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;

class FakeElement extends EventTarget {
  parentNode: FakeElement | null = null;
  childNodes: Child[] = [];
  readonly attrs = new Map<string, string>();
  readonly style: Record<string, string> = {};
  readonly dataset: Record<string, string | undefined>;

  constructor(
    readonly ownerDocument: FakeDocument,
    readonly tagName: string,
  ) {
    super();
    const attrs = this.attrs;
    this.dataset = new Proxy({} as Record<string, string | undefined>, {
      get: (_, k) => (typeof k === "string" ? attrs.get(toData(k)) : undefined),
      set: (_, k, v) => {
        attrs.set(toData(String(k)), String(v));
        return true;
      },
    });
  }

  // A listener's signal is checked when an event fires: node's AbortSignal warns beyond ten
  // abort listeners, which the toolbar's buttons exceed (browsers don't).
  override addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void {
    const signal = typeof options === "object" ? options.signal : undefined;
    if (!listener || signal?.aborted) return;
    const call = typeof listener === "function" ? listener : (ev: Event) => listener.handleEvent(ev);
    const rest = typeof options === "object" ? { ...options, signal: undefined } : options;
    super.addEventListener(type, (ev) => void (signal?.aborted || call(ev)), rest);
  }

  setAttribute(k: string, v: string): void {
    this.attrs.set(k, String(v));
  }
  getAttribute(k: string): string | null {
    return this.attrs.get(k) ?? null;
  }
  removeAttribute(k: string): void {
    this.attrs.delete(k);
  }
  private flag(k: string, on: boolean): void {
    if (on) this.attrs.set(k, "");
    else this.attrs.delete(k);
  }
  get hidden(): boolean {
    return this.attrs.has("hidden");
  }
  set hidden(on: boolean) {
    this.flag("hidden", on);
  }
  get disabled(): boolean {
    return this.attrs.has("disabled");
  }
  set disabled(on: boolean) {
    this.flag("disabled", on);
  }
  get value(): string {
    return this.attrs.get("value") ?? "";
  }
  set value(v: string) {
    this.attrs.set("value", v);
  }
  get title(): string {
    return this.attrs.get("title") ?? "";
  }
  set title(v: string) {
    this.attrs.set("title", v);
  }
  get className(): string {
    return this.attrs.get("class") ?? "";
  }

  private adopt(nodes: Array<Child | string>): Child[] {
    return nodes.map((n) => {
      const node = typeof n === "string" ? new FakeText(n) : n;
      if (node.parentNode) node.parentNode.removeChild(node);
      node.parentNode = this;
      return node;
    });
  }
  append(...nodes: Array<Child | string>): void {
    this.childNodes.push(...this.adopt(nodes));
  }
  appendChild(node: Child): Child {
    this.append(node);
    return node;
  }
  replaceChildren(...nodes: Array<Child | string>): void {
    for (const c of this.childNodes) c.parentNode = null;
    this.childNodes = [];
    this.append(...nodes);
  }
  removeChild(node: Child): void {
    this.childNodes = this.childNodes.filter((c) => c !== node);
    node.parentNode = null;
  }
  remove(): void {
    this.parentNode?.removeChild(this);
  }
  after(node: Child): void {
    const parent = this.parentNode!;
    const [adopted] = parent.adopt([node]);
    parent.childNodes.splice(parent.childNodes.indexOf(this) + 1, 0, adopted!);
  }
  get textContent(): string {
    return this.childNodes.map((c) => c.textContent).join("");
  }
  set textContent(v: string) {
    this.replaceChildren(v);
  }
  click(): void {
    this.dispatchEvent(new Event("click"));
  }

  /** Every element below this one, depth first. */
  *descendants(): Generator<FakeElement> {
    for (const c of this.childNodes) {
      if (c instanceof FakeElement) {
        yield c;
        yield* c.descendants();
      }
    }
  }
  find(pred: (e: FakeElement) => boolean): FakeElement[] {
    return [...this.descendants()].filter(pred);
  }
  hasClass(name: string): boolean {
    return this.className.split(/\s+/).includes(name);
  }
}

class FakeDocument {
  createElement(tag: string): FakeElement {
    return new FakeElement(this, tag);
  }
  createElementNS(_ns: string, tag: string): FakeElement {
    return new FakeElement(this, tag);
  }
}

const fakeDoc = () => new FakeDocument() as unknown as Document;
const fake = (el: HTMLElement) => el as unknown as FakeElement;

function toolbar(state: RunState, clock = { now: 0 }) {
  const sent: Command[] = [];
  const abort = new AbortController();
  const controls = new Controls(fakeDoc(), (cmd) => sent.push(cmd), abort.signal, () => clock.now);
  controls.render(state);
  const button = (cmd: ControlCommand) => fake(controls.el).find((e) => e.getAttribute("data-command") === cmd)[0]!;
  return { controls, sent, abort, button };
}

// --- tests -------------------------------------------------------------------------------

describe("enabled commands", () => {
  const enabledIn = (cmd: ControlCommand) => RUN_STATES.filter((s) => enabledCommands(s)[cmd]);

  it("enable the run controls only while the run is running or paused", () => {
    expect(enabledCommands("running")).toMatchObject({ pause: true, resume: false, test: true, health: true });
    expect(enabledCommands("paused")).toMatchObject({ pause: false, resume: true, step: true });
    for (const cmd of ["pause", "resume", "stop", "step"] as const) {
      expect(enabledIn(cmd).every((s) => s === "running" || s === "paused")).toBe(true);
    }
  });

  it("keep evaluations and the health check once the run has ended", () => {
    expect(enabledIn("validate")).toEqual(["running", "paused", "finished", "stopped"]);
    expect(enabledIn("test")).toEqual(["running", "paused", "finished", "stopped"]);
    expect(enabledIn("health")).toEqual(["running", "paused", "finished", "stopped", "failed"]);
  });

  it("enable the determinism check once a step can have run", () => {
    expect(enabledIn("determinism")).toEqual(["running", "paused", "finished", "stopped"]);
  });

  it("enable the export in every state but stopping", () => {
    expect(enabledIn("export")).toEqual(["idle", "running", "paused", "finished", "stopped", "failed"]);
  });
});

describe("controls toolbar", () => {
  it("send one command message per click of Determinism and Export", () => {
    const { sent, button } = toolbar("paused");
    button("determinism").click();
    button("export").click();
    expect(sent).toEqual([
      { type: "command", name: "determinism" },
      { type: "command", name: "export" },
    ]);
  });

  it("label the new buttons and give each an icon", () => {
    const { button } = toolbar("idle");
    const det = button("determinism");
    const exp = button("export");
    expect(det.getAttribute("aria-label")).toBe("Determinism");
    expect(det.title).toBe("Replay the last step twice and compare losses and gradients bit for bit");
    expect(exp.getAttribute("aria-label")).toBe("Export");
    expect(exp.title).toBe("Save the whole session to a .zip beside the notebook (Session.load continues it)");
    for (const b of [det, exp]) {
      expect(b.find((e) => e.tagName === "path")[0]!.getAttribute("d")).toMatch(/^M/);
      expect(b.textContent).toBe(b.getAttribute("aria-label"));
    }
  });

  it("place Determinism after Health check and Export alone in the last group", () => {
    const { controls } = toolbar("idle");
    const groups = fake(controls.el).childNodes as FakeElement[];
    const commands = (g: FakeElement) => g.find((e) => e.tagName === "button").map((b) => b.getAttribute("data-command"));
    expect(commands(groups.at(-2)!)).toEqual(["validate", "test", "health", "determinism"]);
    expect(commands(groups.at(-1)!)).toEqual(["export"]);
  });

  it("follow the run state and send nothing while disabled", () => {
    const { controls, sent, button } = toolbar("idle");
    expect(button("export").disabled).toBe(false);
    expect(button("determinism").disabled).toBe(true);
    button("determinism").click();
    controls.render("stopping");
    expect(button("export").disabled).toBe(true);
    button("export").click();
    expect(sent).toEqual([]);
    controls.render("finished");
    expect(button("export").disabled).toBe(false);
    expect(button("determinism").disabled).toBe(false);
    button("export").click();
    expect(sent).toEqual([{ type: "command", name: "export" }]);
  });

  it("stop listening once the render's signal aborts", () => {
    const { sent, abort, button } = toolbar("paused");
    abort.abort();
    button("export").click();
    button("determinism").click();
    expect(sent).toEqual([]);
  });
});

describe("header", () => {
  const badges = (header: Header) => fake(header.el).find((e) => e.hasClass("onthefly-deterministic"));

  it("show the deterministic badge only while run.deterministic is true", () => {
    const header = new Header(fakeDoc());
    header.render(normalizeRun({ state: "running" }));
    expect(badges(header)).toHaveLength(0);

    header.render(normalizeRun({ state: "running", deterministic: true }));
    const [badge] = badges(header);
    expect(badge).toBeDefined();
    expect(badge!.className).toBe("onthefly-badge onthefly-deterministic");
    expect(badge!.getAttribute("data-deterministic")).toBe("true");
    expect(badge!.title).toBe("torch.use_deterministic_algorithms is on; seeds fixed");
    expect(badge!.textContent).toBe("deterministic");
    // right after the status pill, and only once however often the run is rendered
    const row = fake(header.el).childNodes;
    expect(row[row.findIndex((c) => c instanceof FakeElement && c.hasClass("onthefly-status")) + 1]).toBe(badge);
    header.render(normalizeRun({ state: "paused", deterministic: true }));
    expect(badges(header)).toHaveLength(1);

    header.render(normalizeRun({ state: "paused", deterministic: false }));
    expect(badges(header)).toHaveLength(0);
    header.render(normalizeRun({ state: "paused", deterministic: "yes" }));
    expect(badges(header)).toHaveLength(0);
  });

  it("read deterministic as a strict boolean", () => {
    expect(normalizeRun({}).deterministic).toBe(false);
    expect(normalizeRun({ deterministic: 1 }).deterministic).toBe(false);
    expect(normalizeRun({ deterministic: true }).deterministic).toBe(true);
  });
});

describe("health panel", () => {
  it("render a determinism result like any other check", () => {
    const doc = fakeDoc();
    const list = doc.createElement("ul");
    const summary = doc.createElement("span");
    const health = normalizeHealth({
      step: 12,
      results: [
        { check: "loss_finite", status: "pass", evidence: "0 NaN", explanation: "all finite" },
        { check: "determinism", status: "fail", evidence: "grad of fc.weight differs", explanation: "a kernel is nondeterministic" },
      ],
    });
    renderHealth(list, summary, health);
    const items = fake(list).childNodes as FakeElement[];
    expect(items.map((i) => i.getAttribute("data-check"))).toEqual(["determinism", "loss_finite"]);
    const det = items[0]!;
    expect(det.getAttribute("data-status")).toBe("fail");
    expect(det.find((e) => e.hasClass("onthefly-badge"))[0]!.textContent).toBe("fail");
    expect(det.find((e) => e.hasClass("onthefly-health-check"))[0]!.textContent).toBe("determinism");
    expect(det.find((e) => e.hasClass("onthefly-health-evidence"))[0]!.textContent).toBe("grad of fc.weight differs");
    expect(det.find((e) => e.hasClass("onthefly-health-explanation"))[0]!.textContent).toBe("a kernel is nondeterministic");
    expect(fake(summary).textContent).toBe("checked step 12");
  });
});

describe("pending commands", () => {
  const event = (seq: number, kind: RunEvent["kind"]) => ({ seq, time: 0, step: 0, kind }) as RunEvent;

  it("send one validation for a double click, and wait for the kernel's report of it", () => {
    const { controls, sent, button, abort } = toolbar("running");
    controls.render("running", true, [event(4, "validation")]); // an old validation
    button("validate").click();
    button("validate").click();
    expect(sent).toEqual([{ type: "command", name: "validate" }]);
    expect(button("validate").disabled).toBe(true);
    expect(button("validate").getAttribute("data-pending")).toBe("true");
    controls.render("running", true, [event(4, "validation")]); // nothing new yet
    expect(button("validate").disabled).toBe(true);
    controls.render("running", true, [event(4, "validation"), event(5, "validation")]);
    expect(button("validate").disabled).toBe(false);
    expect(button("validate").getAttribute("data-pending")).toBe(null);
    abort.abort();
  });

  it("keep Pause pending until the run is paused", () => {
    const { controls, sent, button, abort } = toolbar("running");
    button("pause").click();
    controls.render("running");
    expect(button("pause").disabled).toBe(true);
    controls.render("paused");
    expect(button("resume").disabled).toBe(false);
    controls.render("running");
    expect(button("pause").disabled).toBe(false);
    expect(sent).toEqual([{ type: "command", name: "pause" }]);
    abort.abort();
  });

  it("give up on a command nothing confirms after a while", () => {
    const clock = { now: 1_000 };
    const { controls, button, abort } = toolbar("running", clock);
    button("health").click();
    clock.now += PENDING_MS;
    controls.render("running");
    expect(button("health").disabled).toBe(false);
    abort.abort();
  });

  it("stop only on a second click within the confirmation window", () => {
    const clock = { now: 1_000 };
    const { sent, button, abort } = toolbar("running", clock);
    button("stop").click();
    expect(sent).toEqual([]);
    expect(button("stop").getAttribute("data-confirm")).toBe("true");
    expect(button("stop").textContent).toContain("Confirm stop");
    clock.now += CONFIRM_STOP_MS; // too late: this click arms it again
    button("stop").click();
    expect(sent).toEqual([]);
    clock.now += 100;
    button("stop").click();
    expect(sent).toEqual([{ type: "command", name: "stop" }]);
    expect(button("stop").getAttribute("data-confirm")).toBe(null);
    abort.abort();
  });
});
