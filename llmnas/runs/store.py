"""The run folder's writer: an append-only typed event log, candidate files and an atomic checkpoint.

events.jsonl is flushed and fsynced per event; a line cut short by a kill is cut off before the next
append and skipped (reported) on replay. Folders are created mode 0700: other users' candidates must not
read a run's predictions.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llmnas.errors import RunFailed, UserError
from llmnas.runs.events import Replay, _Event, dump, now, replay
from llmnas.runs.layout import CODE, PROMPT, REPLY, RunLayout
from llmnas.runs.records import Checkpoint, RunRecord
from llmnas.runs.view import RunView

log = logging.getLogger("llmnas")


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write beside ``path`` under a unique name, then rename: readers and concurrent writers never see
    a partial file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class RunStore:
    """Everything a run writes goes through here."""

    def __init__(self, folder: Path):
        self.paths = RunLayout(folder)
        self.folder = self.paths.folder
        self._events = None

    @classmethod
    def create(cls, folder: Path, record: RunRecord | Mapping[str, Any], requirements: str) -> RunStore:
        """A new run folder holding ``record`` (run.json; a mapping is validated as one)."""
        record = RunRecord.model_validate(record)
        paths = RunLayout(folder)
        if paths.events.exists():
            raise UserError(f"{folder} already holds a run: use `llmnas resume {folder}` or another --out")
        try:
            if paths.folder.is_dir() and any(paths.folder.iterdir()):
                raise UserError(
                    f"{folder} is not empty and holds no run: choose a new or empty folder for --out"
                )
            paths.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            paths.candidates.mkdir(exist_ok=True, mode=0o700)
            write_atomic(paths.run_info, _dump(record))
            write_atomic(paths.requirements, f"# Requirements\n\n{now()}\n\n{requirements.strip()}\n")
        except OSError as exc:
            raise UserError(
                f"cannot create the run folder {folder}: {exc.strerror or exc}; choose another --out"
            ) from None
        return cls(folder)

    @classmethod
    def open(cls, folder: Path) -> RunStore:
        if not RunLayout(folder).is_run():
            raise UserError(f"{folder} is not a run folder (no run.json): pass results/<run-id>")
        return cls(folder)

    @property
    def record(self) -> RunRecord:
        """run.json, typed (runs/records.py)."""
        return RunRecord.read(self.paths.run_info)

    def update_run_info(self, **changes: Any) -> None:
        """Rewrite run.json with ``changes`` (config, spec: dumped) over what it holds."""
        record = self.record.model_dump(mode="json")
        write_atomic(self.paths.run_info, _dump(RunRecord.model_validate(record | changes)))

    def append_requirements(self, text: str) -> None:
        with open(self.paths.requirements, "a") as f:
            f.write(f"\n## Refinement, {now()}\n\n{text.strip()}\n")

    def append(self, event: _Event) -> None:
        with self._writing(self.paths.events):
            if self._events is None:
                self._repair_tail()
                self._events = open(self.paths.events, "a", encoding="utf-8")  # noqa: SIM115 - kept open
            if os.fstat(self._events.fileno()).st_nlink == 0:
                self.check_present()
                raise RunFailed(f"{self.paths.events} was deleted while the run was going; stopped")
            self._events.write(dump(event) + "\n")
            self._events.flush()
            os.fsync(self._events.fileno())

    @contextlib.contextmanager
    def _writing(self, path: Path):
        """A failed write (a full disk, a deleted or read-only folder) stops the run with one clear line;
        everything appended before it stays (each event is fsynced, a cut line is skipped on replay)."""
        try:
            yield
        except OSError as exc:
            gone = "" if self.paths.is_run() else f" (the run folder {self.folder} is gone)"
            raise RunFailed(
                f"cannot write {path}: {exc.strerror or exc}{gone}; what was recorded before is kept: "
                f"make room, then `llmnas resume {self.folder}`"
            ) from None

    def _repair_tail(self) -> None:
        """Cut a partial last line left by a kill, so the next event starts on its own line."""
        path = self.paths.events
        if path.exists() and path.stat().st_size:
            data = path.read_bytes()
            if not data.endswith(b"\n"):
                with open(path, "r+b") as f:
                    f.truncate(data.rfind(b"\n") + 1)

    def check_present(self) -> None:
        """Raise RunFailed when the run folder has been deleted under the running search."""
        if not self.paths.is_run():
            raise RunFailed(f"the run folder {self.folder} was deleted while the run was going; stopped")

    def replay(self) -> Replay:
        """The log as typed events; unreadable lines are logged once as warnings and skipped."""
        out = replay(self.paths.events)
        for problem in out.problems:
            log.warning("%s", problem)
        return out

    def view(self) -> RunView:
        """The log folded once into what resume reads (runs/view.py); unreadable lines logged as above."""
        return RunView.fold(self.replay())

    def candidate_dir(self, candidate_id: str) -> Path:
        return self.paths.candidate(candidate_id)

    def write_candidate(self, candidate_id: str, code: str, prompt: str = "", reply: str = "") -> Path:
        folder = self.candidate_dir(candidate_id)
        with self._writing(folder):
            folder.mkdir(exist_ok=True, mode=0o700)  # never re-creates a deleted run folder
            write_atomic(folder / CODE, code)
            if prompt:
                write_atomic(folder / PROMPT, prompt)
            if reply:
                write_atomic(folder / REPLY, reply)
        return folder

    def keep_proposal(self, round: int, slot: int, code: str | None, prompt: str, reply: str) -> Path | None:
        """Keep the prompt, reply and code of a proposal that has no candidate folder of its own (rejected
        before the sandbox, or a duplicate) in ``traces/r<round>-s<slot>/``; None when it has nothing to
        keep (an offline proposal that failed before writing code)."""
        texts = ((PROMPT, prompt), (REPLY, reply), (CODE, code))
        if not any(text for _, text in texts):
            return None
        folder = self.paths.trace(round, slot)
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in texts:
            if text:
                write_atomic(folder / name, text)
        return folder

    def code(self, candidate_id: str) -> str:
        return (self.candidate_dir(candidate_id) / CODE).read_text()

    def save_state(self, state: Checkpoint, blob: bytes = b"") -> None:
        """Blob first, then the JSON that names it: a kill between the two keeps the old pair valid."""
        path = self.paths.state_blob(state.round)
        with self._writing(self.paths.state):
            write_atomic(path, blob)
            write_atomic(self.paths.state, json.dumps(state.model_dump() | {"blob": path.name}))
        for old in self.folder.glob("state.safetensors.*"):
            if old.name != path.name and not old.name.endswith(".tmp"):
                old.unlink(missing_ok=True)

    def load_state(self) -> tuple[Checkpoint, bytes] | None:
        """The last checkpoint and its blob, or None before the first round ends."""
        if not self.paths.state.exists():
            return None
        state = Checkpoint.model_validate(json.loads(self.paths.state.read_text()))
        return state, (self.folder / state.blob).read_bytes()

    def close(self) -> None:
        if self._events is not None:
            self._events.close()
            self._events = None


def _dump(record: RunRecord) -> str:
    return json.dumps(record.model_dump(mode="json"), indent=1)
