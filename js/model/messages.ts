// The messages the dashboard sends to Python (`model.send`): training commands, plan
// decisions and selections, see docs/protocol.md.

import type { Plan } from "./types";

export type CommandName =
  | "pause"
  | "resume"
  | "stop"
  | "step"
  | "validate"
  | "test"
  | "health"
  | "determinism"
  | "export";

export interface Command {
  type: "command";
  /** The training controls, or "compare": recompute the `compare` trait. */
  name: CommandName | "compare";
  n?: number;
}

export type Decision = "approve" | "reject";

export interface PlanMessage {
  type: "plan";
  id: string | number;
  decision: Decision;
  params?: Record<string, number>;
}

/** The message for a decision; approvals carry every parameter (edited or not). */
export function planMessage(plan: Plan, decision: Decision, params: Record<string, number>): PlanMessage {
  const msg: PlanMessage = { type: "plan", id: plan.id, decision };
  if (decision === "approve" && Object.keys(plan.params).length + Object.keys(plan.param_specs).length > 0) {
    msg.params = { ...params };
  }
  return msg;
}

export interface SelectMessage {
  content: { type: "select"; n: number };
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

/** The content of any message the dashboard sends. */
export type Message = Command | PlanMessage | SelectMessage["content"];
