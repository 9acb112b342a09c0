// Live hyperparameters (`hyperparameters` trait): the optimizer's learning rate, weight decay,
// momentum or betas per parameter group, and gradient clipping, each editable. Apply sends the
// edited values (`hyperparameters` message); the run takes them at its next step boundary and
// logs a `hyperparameters` event (a marker on the loss chart). The form says "applying…" until
// the trait shows the new values, or why the kernel refused them (a `rejected_message` event).

import { isObject } from "../model/guards";
import { normalizeEvents, rejectionAfter } from "../model/normalize";
import { h } from "../ui/dom";
import { fmtNum } from "../ui/format";
import { type PanelDef, emptyState, panelFrame } from "./panel";

type Key = "lr" | "weight_decay" | "momentum" | "beta1" | "beta2" | "grad_clip_norm";
const LABELS: Record<Key, string> = {
  lr: "learning rate", weight_decay: "weight decay", momentum: "momentum", beta1: "beta1", beta2: "beta2",
  grad_clip_norm: "clip grad norm",
};
const GROUP_KEYS: Key[] = ["lr", "weight_decay", "momentum", "beta1", "beta2"];

/** A group's values by name (null: set but not a finite number). */
type Values = Record<string, number | null>;

/** `hyperparameters` as the form reads it. */
export interface Hyper {
  groups: Values[];
  grad_clip_norm: number | null;
}

function normalize(v: unknown): Hyper | null {
  if (!isObject(v) || !Array.isArray(v.groups)) return null;
  const clip = typeof v.grad_clip_norm === "number" ? v.grad_clip_norm : null;
  const groups = v.groups.filter(isObject).map((g) => Object.fromEntries(
    Object.entries(g).map(([key, value]) => [key, typeof value === "number" ? value : null])));
  return { groups, grad_clip_norm: clip };
}

/** The values the form shows for ``group`` (-1: every group, shown as the first group's). */
export function shownValues(trait: Hyper, group: number): Partial<Record<Key, number | null>> {
  const g = trait.groups[Math.max(0, group)] ?? {};
  const out: Partial<Record<Key, number | null>> = {};
  for (const key of GROUP_KEYS) if (key in g) out[key] = g[key] ?? null;
  out.grad_clip_norm = trait.grad_clip_norm ?? null;
  return out;
}

/** Whether every group the edit was for holds the values asked for. */
export function applied(trait: Hyper, group: number, asked: Partial<Record<Key, number>>): boolean {
  const groups = group < 0 ? trait.groups : [trait.groups[group]];
  return Object.entries(asked).every(([key, value]) => key === "grad_clip_norm"
    ? trait.grad_clip_norm === value
    : groups.every((g) => g !== undefined && g[key] === value));
}

export const hyperparametersPanel: PanelDef = {
  name: "hyperparameters",
  traits: ["hyperparameters", "events"],
  create(ctx) {
    const { doc, signal } = ctx;
    const frame = panelFrame(doc, "hyperparameters", "Hyperparameters");
    const empty = emptyState(doc, "the optimizer's values appear once it exists");
    const groupSelect = h(doc, "select", { class: "onthefly-hp-group", "aria-label": "Parameter group" });
    const fields = h(doc, "div", { class: "onthefly-hp-fields" });
    const apply = h(doc, "button", { type: "submit", class: "onthefly-btn onthefly-hp-apply", disabled: true }, "Apply");
    const status = h(doc, "span", { class: "onthefly-hp-status", role: "status" });
    const form = h(doc, "form", { class: "onthefly-hp-form" }, fields,
      h(doc, "div", { class: "onthefly-hp-actions" }, apply, status));
    frame.tools.append(groupSelect);
    frame.body.append(empty, form);
    const inputs = new Map<Key, HTMLInputElement>();
    let trait: Hyper | null = null;
    let pending: { group: number; asked: Partial<Record<Key, number>>; seq: number } | null = null;
    let lastSeq = -1;

    const edited = (): Partial<Record<Key, number>> => {
      const shown = trait ? shownValues(trait, Number(groupSelect.value)) : {};
      const out: Partial<Record<Key, number>> = {};
      for (const [key, input] of inputs) {
        const value = input.value.trim() === "" ? null : Number(input.value);
        if (value !== null && Number.isFinite(value) && value !== shown[key]) out[key] = value;
      }
      return out;
    };
    const refreshApply = () => {
      apply.disabled = pending !== null || Object.keys(edited()).length === 0;
    };

    const fill = (force: boolean) => {
      if (!trait) return;
      const shown = shownValues(trait, Number(groupSelect.value));
      const keys = (Object.keys(shown) as Key[]);
      if (force || keys.join() !== [...inputs.keys()].join()) {
        inputs.clear();
        fields.replaceChildren(...keys.map((key) => {
          const input = h(doc, "input", {
            type: "number", class: "onthefly-hp-input", "data-key": key, step: "any", min: 0,
            "aria-label": LABELS[key], placeholder: key === "grad_clip_norm" ? "off" : "",
          });
          input.addEventListener("input", refreshApply, { signal });
          inputs.set(key, input);
          return h(doc, "label", { class: "onthefly-hp-field" }, h(doc, "span", {}, LABELS[key]), input);
        }));
      }
      for (const [key, input] of inputs) {
        if (doc.activeElement === input && !force) continue; // the user is typing here
        const value = shown[key];
        input.value = value == null ? "" : String(Number(value.toPrecision(6)));
        input.title = `now ${value == null ? "off" : fmtNum(value)}`;
      }
    };

    groupSelect.addEventListener("change", () => fill(true), { signal });
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const asked = edited();
      if (!Object.keys(asked).length || pending) return;
      const group = Number(groupSelect.value);
      ctx.send({ type: "hyperparameters", values: asked, ...(group >= 0 ? { group } : {}) });
      pending = { group, asked, seq: lastSeq };
      status.textContent = "applying at the next step…";
      status.dataset.state = "pending";
      refreshApply();
    }, { signal });

    return {
      el: frame.el,
      update(changed) {
        if (changed.has("hyperparameters")) trait = normalize(ctx.model.get("hyperparameters"));
        empty.hidden = trait !== null;
        form.hidden = trait === null;
        if (trait) {
          const options = trait.groups.length > 1
            ? [["-1", "every group"], ...trait.groups.map((_, i) => [String(i), `group ${i}`])]
            : [["-1", "every group"]];
          if (groupSelect.options.length !== options.length) {
            groupSelect.replaceChildren(...options.map(([value, label]) => h(doc, "option", { value }, label!)));
          }
          groupSelect.hidden = trait.groups.length <= 1;
        }
        const events = changed.has("events") ? normalizeEvents(ctx.model.get("events")) : [];
        if (pending && trait && applied(trait, pending.group, pending.asked)) {
          status.textContent = "applied";
          status.dataset.state = "done";
          pending = null;
          fill(true);
        } else if (pending) {
          const refusal = rejectionAfter(events, pending.seq, "hyperparameters");
          if (refusal) {
            status.textContent = String(refusal.reason ?? "refused");
            status.dataset.state = "refused";
            pending = null;
          }
        } else {
          fill(false);
        }
        for (const e of events) lastSeq = Math.max(lastSeq, e.seq);
        refreshApply();
      },
    };
  },
};
