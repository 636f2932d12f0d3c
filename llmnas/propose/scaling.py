"""The ``scale`` operator, the same for every proposer: a parent compound-scaled (candidate/scale.py) up to
the spec's parameter budget, the soft target when there is one, else the hard limit."""

from __future__ import annotations

from llmnas.candidate.layers import MutationError
from llmnas.candidate.scale import scale_to
from llmnas.propose.base import Action, Parent, Proposal
from llmnas.task.spec import TaskSpec


def scale_budget(spec: TaskSpec) -> int | None:
    """The parameter count ``scale`` grows a parent to: the soft target, else the hard limit, else None."""
    return spec.target_params or spec.max_params


def scale_proposal(action: Action, parent: Parent, spec: TaskSpec) -> Proposal:
    """``parent`` scaled to the budget, or a proposal rejected at the static stage saying why not."""
    budget = scale_budget(spec)
    params = parent.metrics.get("params")
    ids = (parent.candidate_id,)
    try:
        if budget is None or params is None or spec.input_shape is None or spec.num_classes is None:
            raise MutationError("needs a parameter budget, the parent's size and the data's shape")
        code, what = scale_to(parent.code, int(params), budget, spec.input_shape, spec.num_classes)
    except MutationError as exc:
        return Proposal(code=None, action=action, parent_ids=ids, stage="static", message=f"scale: {exc}")
    return Proposal(code=code, action=action, parent_ids=ids, notes=(what,))
