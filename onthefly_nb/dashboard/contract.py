"""The dashboard's data contract, declared once: every trait (Python to browser) with its type,
every message (browser to Python) with its schema, and the names both sides share (run states,
event kinds, commands, plan kinds).

The Python side checks against it (``protocol.decode`` for messages, ``check_traits`` in the
tests for what the publisher sends); the front end's types are generated from it into
``js/model/contract.ts`` by ``make contract`` (which writes :func:`typescript`); a test fails when
that file is not what this module writes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .schema import Arr, Bool, Bytes, Enum, Int, Lit, Map, Num, Obj, Opt, Schema, Str, Tup, Union, Unknown, named

PROTOCOL_VERSION = 1
MAX_STEPS = 10_000_000  # a step command asks for at most this many steps
MAX_SELECTION = 50_000_000  # indices in one selection (200 MB of uint32)
MAX_PLAN_PARAMS = 16
MAX_TEXT = 200  # characters of a plan id or parameter name
MAX_PATH = 4096  # characters of a path an overlay message names

RUN_STATES = ("idle", "running", "paused", "stopping", "finished", "stopped", "failed")
COMMAND_NAMES = ("pause", "resume", "stop", "step", "validate", "test", "health", "compare", "determinism",
                 "export")
PLAN_KINDS = ("lower_lr", "clip_gradients", "validate_now", "health_check", "fork", "reweight", "merge",
              "commit_merge")
PLAN_STATUSES = ("proposed", "approved", "rejected", "executed", "failed", "expired")
EVENT_KINDS = (
    "started", "paused", "resumed", "stopping", "finished", "stopped", "failed", "interrupted", "superseded",
    "epoch_end", "validation", "test", "clustered", "selected", "health", "determinism", "lr_changed", "clipping",
    "reweighted", "plan_proposed", *(f"plan_{status}" for status in PLAN_STATUSES[1:]), "rejected_message",
    "command_failed", "forked", "fork_trained", "merged", "merge_committed", "merge_discarded", "gated", "exported",
    "export_failed", "imported", "per_sample_off", "amp_overflow", "nonfinite_skipped",
    "hyperparameters",
)
# the event kinds the loss chart draws as markers, by legend entry (a passing check is drawn quietly)
MARKER_GROUPS: Mapping[str, tuple[str, ...]] = {
    "control": ("paused", "resumed", "stopped", "interrupted"),
    "changes": ("plan_executed", "lr_changed", "clipping", "reweighted", "hyperparameters"),
    "experts": ("forked", "fork_trained", "merged", "merge_committed", "gated"),
    "checks": ("health", "determinism", "test"),
    "faults": ("nonfinite_skipped", "amp_overflow", "failed"),
}
MARKER_KINDS = tuple(kind for kinds in MARKER_GROUPS.values() for kind in kinds)
MAX_MARKERS = 2_000  # the markers trait holds the run's latest this many
MAX_SCALAR_POINTS = 300  # points of each scalar series the scalars trait carries (spread over the run)
MAX_OVERLAY_ROWS = 500  # steps of each overlaid run's median the overlays trait carries
# cluster k's colour on the map and in session.figure("map"): Tableau 10, distinct on light and dark
CLUSTER_COLORS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                  "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")
CURVE_COLUMNS = ("step", "p5", "p25", "p50", "p75", "p95", "mean")
QUANTILE_NAMES = ("p1", "p5", "p25", "p50", "p75", "p95", "p99", "max", "mean")
LINEAGE_KINDS = ("run", "fork", "baseline", "merge")

# ---- traits -------------------------------------------------------------------------------------
EVAL_RESULT = Obj({"step": Int(), "loss": Opt(Num()), "accuracy": Opt(Num())}, name="EvalResult")
RUN = Obj({
    "project": Str(), "run_name": Str(), "state": Enum(RUN_STATES, alias="RunState"), "step": Int(0), "epoch": Int(0),
    "max_epochs": Opt(Int(1)), "steps_per_epoch": Int(0), "total_steps": Opt(Int(0)), "samples_per_sec": Opt(Num()),
    "eta_sec": Opt(Num()), "device": Str(), "error": Opt(Str()), "val": Opt(EVAL_RESULT), "test": Opt(EVAL_RESULT),
    "task": Opt(Enum(("classification", "regression"))), "seen": Int(0), "n_samples": Int(0), "lr": Opt(Num()),
    "deterministic": Bool(), "per_sample_off": Opt(Str()),
}, name="RunTrait")
CURVE = Obj({"n": Int(0), "columns": Arr(Enum(CURVE_COLUMNS, alias="CurveColumn")), "data": Bytes("float32")},
            name="CurveTrait")
EVENT = Obj({"seq": Int(0), "time": Num(), "step": Int(0),
             "kind": Enum(EVENT_KINDS, noun="event kind", alias="EventKind")}, name="RunEvent", extra=Unknown())
CLUSTER_ROW = Obj({"cluster": Int(0), "size": Int(0), "mean_loss": Opt(Num()), "loss_vs_median": Opt(Num()),
                   "top_labels": Str(), "top_predictions": Str()}, name="ClusterRow")
HISTOGRAM = Obj({"edges": Arr(Num()), "counts": Arr(Int(0)),
                 "quantiles": Obj({q: Opt(Num()) for q in QUANTILE_NAMES}, name="Quantiles",
                                  optional=frozenset(QUANTILE_NAMES))},
                name="HistogramTrait")
POINTS = Obj({"version": Int(0), "step": Int(0), "source": Str(), "n": Int(0), "x": Bytes("float32"),
              "y": Bytes("float32"), "loss": Bytes("float32"), "cluster": Bytes("uint16"), "index": Bytes("uint32")},
             name="PointsTrait")
SELECTION = Obj({"version": Int(0), "n": Int(0), "index": Bytes("uint32")}, name="SelectionTrait")
PARAM_SPEC = Obj({"label": Str(), "min": Num(), "max": Num(), "step": Num()}, name="ParamSpec")
PLAN = Obj({"id": Str(1, MAX_TEXT), "kind": Enum(PLAN_KINDS, alias="PlanKind"), "title": Str(), "evidence": Str(),
            "step": Int(0), "params": Map(Num()), "param_specs": Map(PARAM_SPEC),
            "status": Enum(PLAN_STATUSES, alias="PlanStatus"), "result": Opt(Str()), "expires": Opt(Int(0))},
           name="Plan", optional=frozenset({"expires"}))
LINEAGE_NODE = Obj({"id": Str(1), "parent": Opt(Str()), "kind": Enum(LINEAGE_KINDS, alias="LineageKind"),
                    "label": Str(), "step": Int(0), "state": Str(), "slice": Str(), "samples": Int(0),
                    "budget": Int(0), "merged_from": Arr(Str())},
                   name="LineageNode", optional=frozenset({"slice", "samples", "budget", "merged_from"}))
COMPARE = Obj({"version": Int(0), "columns": Arr(Str()), "rows": Arr(Arr(Union((Str(), Opt(Num())))))},
              name="CompareTrait")
HEALTH_RESULT = Obj({"check": Str(), "status": Enum(("pass", "warn", "fail")), "evidence": Str(),
                     "explanation": Str()}, name="HealthResult")
SCALAR_SERIES = Obj({"name": Str(1), "group": Enum(("measured", "logged")),
                     "points": Arr(Tup((Num(), Num())))}, name="ScalarSeries")
OUTPUT_LINE = Obj({"time": Num(), "stream": Enum(("stdout", "stderr")), "text": Str()},
                  name="OutputLine")
HYPER_GROUP = Obj({k: Opt(Num()) for k in ("lr", "weight_decay", "momentum", "beta1", "beta2")},
                  name="HyperparameterGroup", optional=frozenset({"weight_decay", "momentum", "beta1", "beta2"}))
HYPERPARAMETERS = Obj({"groups": Arr(HYPER_GROUP), "grad_clip_norm": Opt(Num())}, name="HyperparametersTrait")
HYPER_KEYS = ("lr", "weight_decay", "momentum", "beta1", "beta2", "grad_clip_norm")  # what a message may set
OVERLAY = Obj({"name": Str(1), "points": Arr(Tup((Num(), Num())))}, name="Overlay")  # [step, median loss]
HEALTH = Obj({"step": Int(0), "time": Num(), "results": Arr(HEALTH_RESULT)}, name="HealthTrait")

TRAITS: Mapping[str, Schema] = {
    "run": RUN,
    "curve": CURVE,
    "val_curve": Arr(Tup((Num(), Num()))),
    "events": Arr(EVENT),
    "markers": Arr(EVENT),
    "clusters": Arr(CLUSTER_ROW),
    "histogram": Opt(HISTOGRAM),
    "points": Opt(POINTS),
    "selection": SELECTION,
    "plans": Arr(PLAN),
    "lineage": Arr(LINEAGE_NODE),
    "health": Opt(HEALTH),
    "compare": Opt(COMPARE),
    "scalars": Arr(SCALAR_SERIES),
    "output": Arr(OUTPUT_LINE),
    "hyperparameters": Opt(HYPERPARAMETERS),
    "overlays": Arr(OVERLAY),
}

# The anywidget's own trait: the comm target and key its front end opens a command comm with (a comm
# the browser opens goes to a kernel subshell, so commands are handled while a cell runs).
WIDGET_TRAITS: Mapping[str, Schema] = {
    "channel": Obj({"target": Str(1), "key": Str(1)}, name="ChannelTrait"),
}

# ---- messages -----------------------------------------------------------------------------------
MESSAGES: Mapping[str, Obj] = {
    "command": Obj({"type": Lit("command"), "name": Enum(COMMAND_NAMES, noun="command", alias="CommandName"),
                    "n": Int(1, MAX_STEPS)}, name="CommandMessage", label="a command message",
                   optional=frozenset({"n"})),
    "select": Obj({"type": Lit("select"), "n": Int(0, MAX_SELECTION)}, name="SelectMessage",
                  label="a select message"),
    "plan": Obj({"type": Lit("plan"), "id": Str(1, MAX_TEXT), "decision": Enum(("approve", "reject")),
                 "params": Map(Num(), MAX_PLAN_PARAMS)}, name="PlanMessage", label="a plan message",
                optional=frozenset({"params"})),
    "overlay": Obj({"type": Lit("overlay"), "path": Str(0, MAX_PATH)}, name="OverlayMessage",
                   label="an overlay message"),  # a saved session's path on the kernel's machine; "" removes all
    "hyperparameters": Obj({"type": Lit("hyperparameters"), "values": Map(Num(), len(HYPER_KEYS)), "group": Int(0)},
                           name="HyperparametersMessage", label="a hyperparameters message",
                           optional=frozenset({"group"})),
}
ERROR_REPLY = Obj({"type": Lit("error"), "protocol": Int(1), "reason": Str()}, name="ErrorReply")
ALIVE = Obj({"type": Lit("alive"), "protocol": Int(1)}, name="AliveMessage")  # the kernel lives, nothing changed


def check_traits(values: Mapping[str, Any]) -> None:
    """Raise ProtocolError unless ``values`` holds every trait, each of its declared type."""
    missing = sorted(set(TRAITS) - set(values))
    if missing:
        raise ValueError(f"trait values lack {missing}")
    for name, schema in TRAITS.items():
        schema.check(values[name], f"trait {name!r}")


def typescript() -> str:
    """The TypeScript module ``js/model/contract.ts``: every named type, the trait map, the names."""
    consts = {"PROTOCOL_VERSION": PROTOCOL_VERSION, "MAX_STEPS": MAX_STEPS, "MAX_SELECTION": MAX_SELECTION,
              "MAX_MARKERS": MAX_MARKERS, "MAX_SCALAR_POINTS": MAX_SCALAR_POINTS}
    names = {"TRAIT_NAMES": tuple(TRAITS), "RUN_STATES": RUN_STATES, "COMMAND_NAMES": COMMAND_NAMES,
             "EVENT_KINDS": EVENT_KINDS, "PLAN_KINDS": PLAN_KINDS, "PLAN_STATUSES": PLAN_STATUSES,
             "CURVE_COLUMNS": CURVE_COLUMNS, "LINEAGE_KINDS": LINEAGE_KINDS, "CLUSTER_COLORS": CLUSTER_COLORS}
    parts = ["// Generated from onthefly_nb/dashboard/contract.py by `make contract`. Do not edit: change the",
             "// contract and regenerate (tests/dashboard/test_contract.py fails while the two differ).", ""]
    parts += [f"export const {k} = {v};" for k, v in consts.items()]
    for const, values in names.items():
        parts += [f"export const {const} = {json.dumps(list(values))} as const;"]
    groups = {group: list(kinds) for group, kinds in MARKER_GROUPS.items()}
    parts += [f"export const MARKER_GROUPS = {json.dumps(groups)} as const;"]
    parts += ["", "export type TraitName = (typeof TRAIT_NAMES)[number];",
              "export type RunState = (typeof RUN_STATES)[number];",
              "export type CommandName = (typeof COMMAND_NAMES)[number];",
              "export type EventKind = (typeof EVENT_KINDS)[number];",
              "export type PlanKind = (typeof PLAN_KINDS)[number];",
              "export type PlanStatus = (typeof PLAN_STATUSES)[number];",
              "export type CurveColumn = (typeof CURVE_COLUMNS)[number];",
              "export type LineageKind = (typeof LINEAGE_KINDS)[number];", ""]
    for obj in named([*TRAITS.values(), *WIDGET_TRAITS.values(), *MESSAGES.values(), ERROR_REPLY, ALIVE]):
        parts += [f"export interface {obj.name} {obj.body()}", ""]
    parts += ["/** Every trait the dashboard reads, with its type. */", "export interface Traits {"]
    parts += [f"  {name}: {schema.ts()};" for name, schema in TRAITS.items()]
    parts += ["}", "", "/** The anywidget's own traits. */", "export interface WidgetTraits {"]
    parts += [f"  {name}: {schema.ts()};" for name, schema in WIDGET_TRAITS.items()]
    parts += ["}", "", "/** Every message the dashboard sends. */",
              f"export type DashboardMessage = {' | '.join(m.ts() for m in MESSAGES.values())};", ""]
    return "\n".join(parts)
