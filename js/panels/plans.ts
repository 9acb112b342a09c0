// Plan cards (`plans` trait): proposed plans can be approved, with edited numeric
// parameters, or rejected; decided plans show their status and result, greyed.

import { type Decision, type PlanMessage, planMessage } from "../model/messages";
import { normalizePlans } from "../model/normalize";
import type { ParamSpec, Plan } from "../model/types";
import { h } from "../ui/dom";
import { fmtNum } from "../ui/format";
import { type PanelDef, panelFrame } from "./panel";

export type ParamCheck = { ok: true; value: number } | { ok: false; reason: string };

/** Validates the text of a parameter input against its spec (a finite number within min/max). */
export function checkParam(raw: string, spec: ParamSpec): ParamCheck {
  const text = raw.trim();
  const value = Number(text);
  if (text === "" || !Number.isFinite(value)) return { ok: false, reason: "enter a number" };
  if (spec.min !== null && value < spec.min) return { ok: false, reason: `at least ${fmtNum(spec.min)}` };
  if (spec.max !== null && value > spec.max) return { ok: false, reason: `at most ${fmtNum(spec.max)}` };
  return { ok: true, value };
}

/** Proposed plans first (oldest first), then the decided ones, newest first. */
export function orderPlans(plans: readonly Plan[]): Plan[] {
  const proposed = plans.filter((p) => p.status === "proposed");
  const decided = plans.filter((p) => p.status !== "proposed").reverse();
  return [...proposed, ...decided];
}

const PENDING_MS = 5000;

interface Card {
  el: HTMLElement;
  signature: string;
  /** Values typed by the user, kept across updates of a still-proposed plan. */
  edits: Map<string, string>;
  pendingTimer: number;
}

const signature = (p: Plan) =>
  JSON.stringify([p.status, p.title, p.evidence, p.step, p.params, p.param_specs, p.result, p.kind, p.expires]);

/** The plans panel body: one card per plan, updated in place so that typing survives updates. */
class PlanList {
  readonly el: HTMLElement;
  private readonly doc: Document;
  private readonly win: Window;
  private readonly cards = new Map<string, Card>();
  private readonly empty: HTMLElement;
  private readonly list: HTMLElement;
  /** Number of plans waiting for a decision (for the panel title). */
  proposed = 0;

  constructor(doc: Document, private readonly send: (msg: PlanMessage) => void) {
    this.doc = doc;
    this.win = doc.defaultView ?? window;
    this.empty = h(doc, "div", { class: "onthefly-empty-state" }, "no plans yet: they are proposed when the run needs attention");
    this.list = h(doc, "div", { class: "onthefly-plan-list" });
    this.el = h(doc, "div", { class: "onthefly-plans" }, this.empty, this.list);
  }

  update(plans: readonly Plan[]): void {
    const ordered = orderPlans(plans);
    this.proposed = plans.filter((p) => p.status === "proposed").length;
    const keep = new Set<string>();
    const nodes: HTMLElement[] = [];
    for (const plan of ordered) {
      const key = String(plan.id);
      if (keep.has(key)) continue;
      keep.add(key);
      let card = this.cards.get(key);
      const sig = signature(plan);
      if (!card) {
        card = { el: h(this.doc, "article", { class: "onthefly-plan", "data-plan-id": key }), signature: "", edits: new Map(), pendingTimer: 0 };
        this.cards.set(key, card);
      }
      if (card.signature !== sig) {
        this.clearPending(card);
        if (plan.status !== "proposed") card.edits.clear();
        card.signature = sig;
        this.fill(card, plan);
      }
      nodes.push(card.el);
    }
    for (const [key, card] of this.cards) {
      if (keep.has(key)) continue;
      this.clearPending(card);
      this.cards.delete(key);
    }
    // Reorder only when needed: moving a node would take the focus from its inputs.
    const current = [...this.list.children];
    if (current.length !== nodes.length || current.some((n, i) => n !== nodes[i])) this.list.replaceChildren(...nodes);
    this.empty.hidden = nodes.length > 0;
  }

  dispose(): void {
    for (const card of this.cards.values()) this.clearPending(card);
    this.cards.clear();
  }

  private clearPending(card: Card): void {
    if (card.pendingTimer) this.win.clearTimeout(card.pendingTimer);
    card.pendingTimer = 0;
    delete card.el.dataset.pending;
    for (const b of card.el.querySelectorAll<HTMLButtonElement>("button[data-decision]")) b.disabled = false;
  }

  private fill(card: Card, plan: Plan): void {
    const doc = this.doc;
    const el = card.el;
    const proposed = plan.status === "proposed";
    el.dataset.planId = String(plan.id);
    el.dataset.status = plan.status;
    el.dataset.kind = plan.kind;
    el.classList.toggle("onthefly-plan-decided", !proposed);

    const head = h(
      doc,
      "div",
      { class: "onthefly-plan-head" },
      h(doc, "span", { class: "onthefly-plan-title" }, plan.title),
      h(doc, "span", { class: "onthefly-badge", "data-status": plan.status }, plan.status),
    );
    if (plan.step !== null) head.append(h(doc, "span", { class: "onthefly-plan-step" }, `step ${plan.step}`));
    if (proposed && plan.expires !== null) {
      head.append(h(doc, "span", { class: "onthefly-plan-expires" }, `holds until step ${plan.expires}`));
    }
    const children: Node[] = [head];
    if (plan.evidence) children.push(h(doc, "p", { class: "onthefly-plan-evidence" }, plan.evidence));

    const names = Object.keys(plan.param_specs);
    if (!proposed) {
      if (names.length) {
        children.push(
          h(doc, "div", { class: "onthefly-plan-params onthefly-plan-params-ro" },
            ...names.map((n) => h(doc, "span", { class: "onthefly-param-ro" }, `${plan.param_specs[n]!.label} ${fmtNum(plan.params[n])}`))),
        );
      }
      if (plan.result) children.push(h(doc, "p", { class: "onthefly-plan-result" }, plan.result));
      el.replaceChildren(...children);
      return;
    }

    const inputs = new Map<string, HTMLInputElement>();
    const approve = h(
      doc,
      "button",
      { type: "button", class: "onthefly-btn onthefly-btn-primary", "data-plan-id": String(plan.id), "data-decision": "approve" },
      "Approve",
    );
    const reject = h(
      doc,
      "button",
      { type: "button", class: "onthefly-btn", "data-plan-id": String(plan.id), "data-decision": "reject" },
      "Reject",
    );
    const validate = (): Record<string, number> | null => {
      const values: Record<string, number> = {};
      let ok = true;
      for (const [name, input] of inputs) {
        const check = checkParam(input.value, plan.param_specs[name]!);
        const error = input.parentElement?.querySelector(".onthefly-param-error");
        if (check.ok) {
          values[name] = check.value;
          input.removeAttribute("aria-invalid");
          if (error) error.textContent = "";
        } else {
          ok = false;
          input.setAttribute("aria-invalid", "true");
          if (error) error.textContent = check.reason;
        }
      }
      approve.disabled = !ok || el.dataset.pending === "true";
      return ok ? values : null;
    };

    if (names.length) {
      const params = h(doc, "div", { class: "onthefly-plan-params" });
      for (const name of names) {
        const spec = plan.param_specs[name]!;
        const value = card.edits.get(name) ?? (plan.params[name] !== undefined ? String(plan.params[name]) : "");
        const input = h(doc, "input", {
          type: "number",
          class: "onthefly-param-input",
          name,
          value,
          min: spec.min ?? undefined,
          max: spec.max ?? undefined,
          step: spec.step ?? "any",
          "aria-label": spec.label,
          "data-param": name,
        });
        input.addEventListener("input", () => {
          card.edits.set(name, input.value);
          validate();
        });
        input.addEventListener("keydown", (ev) => {
          if (ev.key === "Enter" && !approve.disabled) approve.click();
        });
        inputs.set(name, input);
        const range = spec.min !== null || spec.max !== null ? `${fmtNum(spec.min)}–${fmtNum(spec.max)}` : "";
        params.append(
          h(doc, "label", { class: "onthefly-param" },
            h(doc, "span", { class: "onthefly-param-label" }, spec.label),
            input,
            h(doc, "span", { class: "onthefly-param-range" }, range),
            h(doc, "span", { class: "onthefly-param-error", role: "alert" })),
        );
      }
      children.push(params);
    }

    const decide = (decision: Decision) => {
      if (el.dataset.pending === "true") return;
      const values = decision === "approve" ? validate() : {};
      if (values === null) return;
      this.send(planMessage(plan, decision, values));
      el.dataset.pending = "true";
      approve.disabled = reject.disabled = true;
      // Re-enable if Python never answers (a rejected message leaves the plan proposed).
      card.pendingTimer = this.win.setTimeout(() => {
        card.pendingTimer = 0;
        delete el.dataset.pending;
        reject.disabled = false;
        validate();
      }, PENDING_MS);
    };
    approve.addEventListener("click", () => decide("approve"));
    reject.addEventListener("click", () => decide("reject"));
    children.push(h(doc, "div", { class: "onthefly-plan-actions" }, approve, reject));
    el.replaceChildren(...children);
    validate();
  }
}

export const plansPanel: PanelDef = {
  name: "plans",
  traits: ["plans"],
  create(ctx) {
    const frame = panelFrame(ctx.doc, "plans", "Plans");
    const plans = new PlanList(ctx.doc, (msg) => ctx.send(msg));
    const count = h(ctx.doc, "span", { class: "onthefly-count-badge", hidden: true });
    frame.title.append(count);
    frame.body.append(plans.el);
    return {
      el: frame.el,
      update() {
        plans.update(normalizePlans(ctx.model.get("plans")));
        count.textContent = String(plans.proposed);
        count.hidden = plans.proposed === 0;
      },
      dispose: () => plans.dispose(),
    };
  },
};
