"""The LLM proposer: operator -> prompt -> chat model -> extracted code (instructions for mutations come
from propose/instructions.py).

In completion mode (a base model, see llm/chat.py) the prompt is the start of a Python file: the
requirements and the contract in a docstring, parents and failures as comments, then the imports,
``build_model`` and the first lines of ``class Model`` (prompts/completion_*.md). The model's
continuation is appended to that prefix and the whole file goes through extraction.

Text from earlier candidates is shown minimised and marked (docs/architecture.md, "The trust boundary"):
parent code without comments, docstrings or long strings (``shown_code``, parsed in the limited child of
candidate/bounded.py), error messages cut to ``MESSAGE_CHARS``; in chat prompts both sit in fences they
cannot close (``prompts.fenced``), in completion prompts on comment lines. Replies are extracted in that
child too, after a size cap.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence

import numpy as np

from llmnas.candidate import bounded
from llmnas.candidate.bounded import MAX_CANDIDATE_BYTES, MESSAGE_CHARS, RAW_TEXT_CHARS, REPLY_FACTOR
from llmnas.candidate.checks import DEFAULT_ALLOWED_IMPORTS
from llmnas.llm.chat import ChatModel, Completion, LLMError, NoChatTemplate, RunEnding, completion_mode
from llmnas.llm.prompts import clipped, fenced, format_metrics, format_spec, render
from llmnas.propose.base import Action, Operator, Parent, Proposal
from llmnas.propose.instructions import InstructionArchive
from llmnas.propose.scaling import scale_proposal
from llmnas.task.spec import TaskSpec

log = logging.getLogger("llmnas.propose.llm")

_NOTE = "instruction="
# Where a base model's continuation of the file is over: a main guard, a fence, a new module docstring,
# top-level usage code. Sent as stop strings (an OpenAI server takes four) and cut again afterwards.
STOPS = ["\nif __name__", "\n```", '\n"""', "\nmodel ="]
_MODULE_LEVEL_OK = re.compile(r"(?:def |class |async def |@|#|import |from |[A-Z_][A-Z0-9_]* *=)")
_CODE_KEYS = ("parent_code", "parent_a_code", "parent_b_code", "code")


class LLMProposer:
    """Writes candidates with a chat model; implements the Proposer protocol."""

    operators = tuple(Operator)

    @property
    def variants(self) -> tuple[str, ...]:
        """Prompt variants the policy chooses among: the live mutation instructions."""
        return tuple(self.instructions.names())

    def __init__(
        self,
        chat: ChatModel,
        allowed_imports: Iterable[str] = DEFAULT_ALLOWED_IMPORTS,
        instructions: InstructionArchive | None = None,
        max_tokens: int = 2048,
        evolve_every: int = 3,
        max_candidate_bytes: int = MAX_CANDIDATE_BYTES,
    ):
        self.chat = chat
        self.evolve_every = evolve_every
        self._rounds = 0
        self.allowed_imports = frozenset(allowed_imports)
        self.instructions = instructions if instructions is not None else InstructionArchive()
        self.max_tokens = max_tokens
        self.max_candidate_bytes = max_candidate_bytes
        self._contract = render("contract", allowed_imports=", ".join(sorted(self.allowed_imports)))

    def propose(
        self, action: Action, parents: Sequence[Parent], spec: TaskSpec, rng: np.random.Generator
    ) -> Proposal:
        """One proposal; a failed model call or reply is a Proposal with a stage, only BudgetExhausted raises.
        ``scale`` needs no model: it is a code transformation."""
        if action.operator == Operator.scale and parents:
            return scale_proposal(action, parents[0], spec)
        op, notes = _effective(action.operator, parents)
        values: dict[str, object] = {"spec": format_spec(spec), "contract": self._contract}
        used = parents[: {Operator.generate: 0, Operator.crossover: 2}.get(op, 1)]
        if op == Operator.mutate:
            name = action.variant if action.variant in self.instructions else self.instructions.choose(rng)
            notes.append(f"{_NOTE}{name}")
            values.update(self._parent(used[0]), instruction=self.instructions.get(name).text)
        elif op == Operator.simplify:
            values.update(self._parent(used[0]))
        elif op == Operator.crossover:
            values.update(self._parent(used[0], "parent_a_"), **self._parent(used[1], "parent_b_"))
        elif op == Operator.repair:
            values.update(
                code=shown_code(used[0].code, self.max_candidate_bytes),
                stage=used[0].stage,
                message=clipped(used[0].message or "(no message)", MESSAGE_CHARS),
            )
        chat_prompt = render(op, **_marked(values)) if not completion_mode(self.chat) else ""
        trace = {"action": action, "parent_ids": tuple(p.candidate_id for p in used), "prompt": chat_prompt}
        try:
            if chat_prompt:
                try:
                    return self._chat_proposal(chat_prompt, action, notes, trace)
                except NoChatTemplate:  # auto mode: the backend has switched; ask again as a completion
                    pass
            prompt = self._completion_prompt(op, values, used)
            return self._completion_proposal(prompt, action, notes, {**trace, "prompt": prompt})
        except RunEnding:
            raise
        except LLMError as e:
            return Proposal(code=None, stage="llm", message=str(e), notes=tuple(notes), **trace)

    def _chat_proposal(self, prompt: str, action: Action, notes: list[str], trace: dict) -> Proposal:
        messages = [{"role": "system", "content": render("system")}, {"role": "user", "content": prompt}]
        reply = self.chat.complete(messages, temperature=action.temperature, n=1, max_tokens=self.max_tokens)[
            0
        ]
        return self._extracted(reply, reply.text, reply.text, notes, trace)

    def _completion_prompt(self, op: Operator, values: dict[str, object], used: Sequence[Parent]) -> str:
        """The start of a Python file for a base model (prompts/completion_<op>.md)."""
        contract = render("completion_contract", allowed_imports=", ".join(sorted(self.allowed_imports)))
        out: dict[str, object] = {
            **values,
            "spec": docstring_safe(str(values["spec"])),
            "contract": docstring_safe(contract),
            "head": render("completion_head"),
        }
        for key in ("parent_code", "parent_a_code", "parent_b_code"):
            if key in out:
                out[key] = commented(str(out[key]))
        if op == Operator.repair:
            code = shown_code(code_part(used[0].code), self.max_candidate_bytes)
            out.update(code=commented(code), message=commented(str(values["message"])))
        if op == Operator.mutate:
            out["instruction"] = " ".join(str(values["instruction"]).split())
        return render(f"completion_{op}", **out)

    def _completion_proposal(self, prompt: str, action: Action, notes: list[str], trace: dict) -> Proposal:
        reply = self.chat.complete_text(  # type: ignore[attr-defined]
            prompt, temperature=action.temperature, n=1, max_tokens=self.max_tokens, stop=STOPS
        )[0]
        continuation = end_of_module(reply.text)
        # The file so far plus its continuation; an unclosed fence lets extraction drop a cut-off tail.
        whole = f"{prompt}{continuation}"
        return self._extracted(
            reply, continuation, whole, [*notes, "completion mode"], trace, f"```python\n{whole}"
        )

    def _extracted(
        self,
        reply: Completion,
        text: str,
        shown: str,
        notes: list[str],
        trace: dict,
        extract_from: str | None = None,
    ) -> Proposal:
        """The proposal for a reply: ``text`` is what the model wrote, ``shown`` the reply as recorded."""
        usage = {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens}
        if not text.strip():
            return Proposal(
                code=None,
                stage="llm",
                message="the model returned an empty reply",
                notes=tuple(notes),
                usage=usage,
                **trace,
            )
        result = self._extract(extract_from or shown)
        if result["kind"] == "rejection":
            return Proposal(
                code=None,
                reply=shown,
                stage=result["stage"],
                message=result["message"],
                notes=tuple(notes),
                usage=usage,
                **trace,
            )
        return Proposal(
            code=result["code"], reply=shown, notes=(*notes, *result["notes"]), usage=usage, **trace
        )

    def _extract(self, reply: str) -> dict:
        """``extract_code`` on ``reply`` in the limited child, after the size cap; a rejection as data."""
        over = bounded.too_big(reply, self.max_candidate_bytes * REPLY_FACTOR, "the reply")
        if over:
            return {
                "kind": "rejection",
                "stage": "extract",
                "message": f"{over}; reply with one short module",
            }
        try:
            return bounded.extract(reply, self.allowed_imports)
        except bounded.Failed as e:
            return {
                "kind": "rejection",
                "stage": "extract",
                "message": f"reading the code out of the reply {e}; reply with one short, simple module",
            }

    def _parent(self, parent: Parent, prefix: str = "parent_") -> dict[str, str]:
        return {
            f"{prefix}code": shown_code(parent.code, self.max_candidate_bytes),
            f"{prefix}metrics": format_metrics(parent.metrics, parent.reward),
        }

    def learn(self, proposal: Proposal, reward: float) -> None:
        """Credit the mutation instruction the proposal used (if any) with ``reward``."""
        for note in proposal.notes:
            if note.startswith(_NOTE):
                self.instructions.update(note[len(_NOTE) :], reward)

    def end_round(self, rng: np.random.Generator) -> None:
        """Every ``evolve_every`` rounds, the model writes new instructions from the best ones."""
        self._rounds += 1
        if completion_mode(self.chat):  # a base model does not follow the instruction-writing prompt
            return
        if self.evolve_every and self._rounds % self.evolve_every == 0:
            self.instructions.evolve(self.chat, rng)

    def state(self) -> tuple[dict, bytes]:
        return {"instructions": self.instructions.state_dict(), "rounds": self._rounds}, b""

    def load_state(self, meta: dict, blob: bytes) -> None:
        self.instructions.load_state_dict(meta["instructions"])
        self._rounds = meta["rounds"]


def _effective(operator: Operator, parents: Sequence[Parent]) -> tuple[Operator, list[str]]:
    """The operator the parents allow, and a note when it differs from the one asked for."""
    op = operator
    if op == Operator.crossover and len(parents) < 2:
        op = Operator.mutate
    if op == Operator.repair and parents and parents[0].stage is None:
        op = Operator.mutate
    if op != Operator.generate and not parents:
        op = Operator.generate
    return op, ([f"{operator} fell back to {op}: not enough suitable parents"] if op != operator else [])


def shown_code(code: str, max_bytes: int = MAX_CANDIDATE_BYTES) -> str:
    """Code as a model is shown it: minimised in the limited child (no comments, docstrings, long or wordy
    strings); text that does not parse (a rejected reply to repair) is cut to ``RAW_TEXT_CHARS``."""
    small = bounded.minimise(code, max_bytes)
    return small.strip() if small is not None else clipped(code, RAW_TEXT_CHARS)


def _marked(values: dict[str, object]) -> dict[str, object]:
    """Chat-prompt values with the untrusted ones in fences they cannot close."""
    out = dict(values)
    for key in _CODE_KEYS:
        if key in out:
            out[key] = fenced(str(out[key]), "python")
    if "message" in out:
        out["message"] = fenced(str(out["message"]))
    return out


def docstring_safe(text: str) -> str:
    """``text`` that can sit inside a triple-quoted docstring without ending it or escaping anything."""
    return text.replace("\\", "/").replace('"""', "'''")


def commented(text: str) -> str:
    """Every line of ``text`` as a Python comment line."""
    return "\n".join(f"# {line}".rstrip() for line in text.strip("\n").split("\n"))


def code_part(text: str) -> str:
    """A file written in completion mode without its docstring and comment preamble: the code."""
    lines = text.split("\n")
    start = next((i for i, line in enumerate(lines) if line.startswith(("import ", "from "))), 0)
    return "\n".join(lines[start:])


def end_of_module(continuation: str) -> str:
    """The continuation up to where the module is over: the first stop string, or the first top-level
    line that is not a definition, import, constant or comment (usage code, prose, a new file)."""
    for stop in STOPS:
        continuation = continuation.split(stop, 1)[0]
    lines = continuation.split("\n")
    for i, line in enumerate(lines[1:], start=1):
        if line.strip() and not line[0].isspace() and not _MODULE_LEVEL_OK.match(line):
            return "\n".join(lines[:i]).rstrip() + "\n"
    return continuation
