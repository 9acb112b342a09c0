"""The experts' plan cards: fork a specialist on a standout cluster, merge a trained fork into a
candidate, commit (or discard) the candidate; and the merge card a trained fork proposes."""

from __future__ import annotations

from ..steering.plans import Plan, PlanAction, PlanBook
from .forks import Expert, ForkOptions
from .merges import Merges
from .workshop import Workshop


def expert_actions(workshop: Workshop, merges: Merges) -> dict[str, PlanAction]:
    def fork(plan: Plan) -> str:
        where = plan.context["slice"]
        options = ForkOptions(int(plan.params["budget"]), general_share=plan.params["general_share"])
        expert = workshop.fork_job(plan.context["rows"], where, options)()
        return f"{expert.name}: {len(expert.losses)} steps on {where}, final loss {expert.losses[-1]:.4g}"

    def merge(plan: Plan) -> str:
        candidate = merges.merge([plan.context["expert"]], "swa")
        merges.propose_commit(candidate)
        return f"{candidate.name}: candidate weights; see its commit card"

    return {
        "fork": PlanAction(fork),
        "merge": PlanAction(merge),
        "commit_merge": PlanAction(lambda plan: merges.commit_job(plan.context["merge"])(),
                                   on_reject=lambda plan: merges.discard(plan.context["merge"])),
    }


def propose_merge(plans: PlanBook, workshop: Workshop, expert: Expert) -> None:
    """After a fork is trained: a card to merge it into the run, with its slice loss against the run's."""
    if expert.kind != "fork" or workshop.table is None:
        return
    row, column = workshop.table.loc, f"slice {expert.name} loss"
    evidence = (f"{expert.name} trained {len(expert.losses)} steps on {expert.slice}; loss on that slice "
                f"{row[expert.name, column]:.4g} against the run's {row[workshop.name, column]:.4g}")
    plans.propose("merge", f"Merge {expert.name} into the run", evidence, context={"expert": expert.name})
