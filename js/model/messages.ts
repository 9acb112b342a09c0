// The messages the dashboard sends to Python (`model.send`): training commands, plan
// decisions, selections and hyperparameter edits, typed by the contract (contract.ts,
// docs/protocol.md).

import type {
  CommandMessage, HyperparametersMessage, OverlayMessage, PlanMessage, SelectMessage as SelectContent,
} from "./contract";
import type { Plan } from "./types";

export type { CommandName } from "./contract";
export type Command = CommandMessage;
export type Decision = PlanMessage["decision"];
export type { PlanMessage };

/** The message for a decision; approvals carry every parameter (edited or not). */
export function planMessage(plan: Plan, decision: Decision, params: Record<string, number>): PlanMessage {
  const msg: PlanMessage = { type: "plan", id: plan.id, decision };
  if (decision === "approve" && Object.keys(plan.params).length + Object.keys(plan.param_specs).length > 0) {
    msg.params = { ...params };
  }
  return msg;
}

export interface SelectMessage {
  content: SelectContent;
  /** Exactly one buffer: the sorted u32 dataset indices, nothing before or after them. */
  buffers: [ArrayBuffer];
}

/** The `select` message for the given sorted dataset indices. */
export function selectMessage(indices: Uint32Array): SelectMessage {
  const exact =
    indices.byteOffset === 0 && indices.byteLength === indices.buffer.byteLength && indices.buffer instanceof ArrayBuffer
      ? indices.buffer
      : indices.slice().buffer;
  return { content: { type: "select", n: indices.length }, buffers: [exact] };
}

export type { HyperparametersMessage, OverlayMessage };

/** The content of any message the dashboard sends. */
export type Message = Command | PlanMessage | SelectContent | HyperparametersMessage | OverlayMessage;
