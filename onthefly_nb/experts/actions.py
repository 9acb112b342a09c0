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

    def fork_merged(plan: Plan) -> str | None:
        """Why the card's fork can no longer be merged by it: gone, merged, or in a candidate already."""
        name = plan.context["expert"]
        expert = workshop.experts.get(name)
        if expert is None or expert.state != "trained":
            return f"{name} is {'gone' if expert is None else expert.state} now"
        pending = next((m.name for m in merges.merges.values() if name in m.experts and m.state == "candidate"), None)
        return None if pending is None else f"{name} was merged into the candidate {pending} another way"

    def candidate_decided(plan: Plan) -> str | None:
        merge = merges.merges.get(plan.context["merge"])
        return None if merge is not None and merge.state == "candidate" else f"{plan.context['merge']} was decided"

    return {
        "fork": PlanAction(fork),
        "merge": PlanAction(merge, outdated=fork_merged),
        "commit_merge": PlanAction(lambda plan: merges.commit_job(plan.context["merge"])(),
                                   on_reject=lambda plan: merges.discard(plan.context["merge"]),
                                   outdated=candidate_decided),
    }


def propose_merge(plans: PlanBook, workshop: Workshop, expert: Expert) -> None:
    """After a fork is trained: a card to merge it into the run, with its slice loss against the run's."""
    if expert.kind != "fork" or workshop.table is None:
        return
    row, column = workshop.table.loc, f"held-out {expert.name} loss"
    trained = f"{expert.name} trained {len(expert.losses)} steps on {expert.slice}"
    if column in workshop.table:
        evidence = (f"{trained}; on {len(expert.held_out)} held-out validation samples of its region, loss "
                    f"{row[expert.name, column]:.4g} against the run's {row[workshop.name, column]:.4g}")
    else:
        column = f"slice {expert.name} loss"
        evidence = (f"{trained}; no validation sample lies in its region, so only the rows it trained on score it "
                    f"(which says little): loss {row[expert.name, column]:.4g} against the run's "
                    f"{row[workshop.name, column]:.4g}")
    plans.propose("merge", f"Merge {expert.name} into the run", evidence, context={"expert": expert.name})
