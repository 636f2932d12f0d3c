"""Where everything lives in a run folder: the one owner of these names (see docs/architecture.md)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from llmnas.errors import UserError

CODE, PROMPT, REPLY = "model.py", "prompt.md", "reply.md"


class RunLayout:
    """Paths inside one run folder."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    @property
    def run_info(self) -> Path:
        return self.folder / "run.json"

    @property
    def requirements(self) -> Path:
        return self.folder / "requirements.md"

    @property
    def events(self) -> Path:
        return self.folder / "events.jsonl"

    @property
    def state(self) -> Path:
        return self.folder / "state.json"

    def state_blob(self, round_: int) -> Path:
        return self.folder / f"state.safetensors.{round_}"

    @property
    def candidates(self) -> Path:
        return self.folder / "candidates"

    def candidate(self, candidate_id: str) -> Path:
        return self.candidates / candidate_id

    @property
    def best(self) -> Path:
        return self.folder / "best"

    @property
    def final(self) -> Path:
        """--final-train: the chosen candidate trained again on train + validation."""
        return self.folder / "final"

    @property
    def traces(self) -> Path:
        return self.folder / "traces"

    def trace(self, round_: int, slot: int) -> Path:
        """Files of a proposal that never became a candidate (kept for fine-tuning)."""
        return self.traces / f"r{round_:04d}-s{slot:03d}"

    @property
    def adapters(self) -> Path:
        return self.folder / "adapters"

    @property
    def report(self) -> Path:
        return self.folder / "report.html"

    @property
    def plots(self) -> Path:
        return self.folder / "plots"

    @property
    def log(self) -> Path:
        """Tracebacks of unexpected errors, for bug reports."""
        return self.folder / "llmnas.log"

    def is_run(self) -> bool:
        return self.run_info.is_file()


def refuse_overwrite(paths: Iterable[Path], what: str) -> None:
    """A UserError naming the files among ``paths`` that exist: the user's files are never replaced
    unless they pass --force (``what``: the command, for the message)."""
    taken = sorted(str(p) for p in paths if Path(p).exists() or Path(p).is_symlink())
    if taken:
        shown = ", ".join(taken[:4]) + (f" and {len(taken) - 4} more" if len(taken) > 4 else "")
        raise UserError(f"{what} would overwrite {shown}; choose another --out or pass --force")
