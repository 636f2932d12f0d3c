"""Code mutations of parent candidates, made on source text with libcst: nothing here runs candidate code.

A mutation finds its sites in arbitrary PyTorch code: layers inside ``nn.Sequential(...)`` calls and list
literals, and standalone layer calls such as ``self.conv1 = nn.Conv2d(...)``. A standalone layer is changed
where it is built -- into ``nn.Sequential(layer, ...)``, ``Residual(layer)`` or ``nn.Identity()`` -- so that
``forward`` needs no edit. Sequential-style CNNs and MLPs stay shape-consistent; for exotic code the
sandbox's shape check is the judge.

This module is the entry point; layers.py reads a candidate, mutations.py holds the kinds, and
cst_edits.py the libcst editing they share.
"""

from __future__ import annotations

import numpy as np

from llmnas.candidate.layers import MutationError, Parsed
from llmnas.candidate.mutations import SITES, choice

MUTATIONS: tuple[str, ...] = ("width", "kernel", "depth", "residual", "norm", "activation", "dropout")


def mutate(code: str, kind: str, rng: np.random.Generator) -> tuple[str, str]:
    """Apply one ``kind`` mutation at a site chosen by ``rng``: (new code, one-line description).

    Raises MutationError when the code has no site for ``kind`` (or does not parse).
    """
    if kind not in MUTATIONS:
        raise ValueError(f"unknown mutation {kind!r}; choose from {', '.join(MUTATIONS)}")
    ctx = Parsed(code)
    groups = [sites for sites in SITES[kind](ctx).values() if sites]
    if not groups:
        raise MutationError(f"no site for a {kind} mutation in this code")
    change = choice(rng, choice(rng, groups))(rng)
    return ctx.render(change), change.description


def applicable(code: str) -> tuple[str, ...]:
    """The mutations that have at least one site in ``code`` (none when it does not parse)."""
    try:
        ctx = Parsed(code)
    except MutationError:
        return ()
    return tuple(kind for kind in MUTATIONS if any(SITES[kind](ctx).values()))
