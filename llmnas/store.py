"""The run folder: an append-only event log plus candidate files and an atomic state checkpoint.

events.jsonl is flushed and fsynced per event; a line cut short by a kill is ignored on replay.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

EVENTS = "events.jsonl"
STATE = "state.json"
STATE_BLOB = "state.safetensors"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write beside ``path`` under a unique name, then rename: readers and concurrent writers never see
    a partial file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class RunStore:
    """Everything a run writes goes through here."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._events = None

    @classmethod
    def create(cls, folder: Path, run_info: dict, requirements: str) -> RunStore:
        folder = Path(folder)
        if (folder / EVENTS).exists():
            raise FileExistsError(
                f"{folder} already holds a run: use `llmnas resume {folder}` or another --out"
            )
        (folder / "candidates").mkdir(parents=True, exist_ok=True)
        write_atomic(folder / "run.json", json.dumps(run_info, indent=1, default=str))
        write_atomic(folder / "requirements.md", f"# Requirements\n\n{now()}\n\n{requirements.strip()}\n")
        return cls(folder)

    @classmethod
    def open(cls, folder: Path) -> RunStore:
        folder = Path(folder)
        if not (folder / "run.json").is_file():
            raise FileNotFoundError(f"{folder} is not a run folder (no run.json): pass results/<run-id>")
        return cls(folder)

    @property
    def run_info(self) -> dict:
        return json.loads((self.folder / "run.json").read_text())

    def update_run_info(self, **changes) -> None:
        info = self.run_info | changes
        write_atomic(self.folder / "run.json", json.dumps(info, indent=1, default=str))

    def append_requirements(self, text: str) -> None:
        with open(self.folder / "requirements.md", "a") as f:
            f.write(f"\n## Refinement, {now()}\n\n{text.strip()}\n")

    def append(self, event: dict) -> None:
        if self._events is None:
            self._repair_tail()
            self._events = open(self.folder / EVENTS, "a", encoding="utf-8")  # noqa: SIM115 - kept open
        self._events.write(json.dumps({"time": now(), **event}, default=str) + "\n")
        self._events.flush()
        os.fsync(self._events.fileno())

    def _repair_tail(self) -> None:
        """Cut a partial last line left by a kill, so the next event starts on its own line."""
        path = self.folder / EVENTS
        if path.exists() and path.stat().st_size:
            data = path.read_bytes()
            if not data.endswith(b"\n"):
                with open(path, "r+b") as f:
                    f.truncate(data.rfind(b"\n") + 1)

    def events(self) -> list[dict]:
        path = self.folder / EVENTS
        if not path.exists():
            return []
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a kill mid-write
        return out

    def candidate_dir(self, candidate_id: str) -> Path:
        return self.folder / "candidates" / candidate_id

    def write_candidate(self, candidate_id: str, code: str, prompt: str = "", reply: str = "") -> Path:
        folder = self.candidate_dir(candidate_id)
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / "model.py", code)
        if prompt:
            write_atomic(folder / "prompt.md", prompt)
        if reply:
            write_atomic(folder / "reply.md", reply)
        return folder

    def code(self, candidate_id: str) -> str:
        return (self.candidate_dir(candidate_id) / "model.py").read_text()

    def save_state(self, state: dict, blob: bytes = b"") -> None:
        """Blob first, then the JSON that names it: a kill between the two keeps the old pair valid."""
        name = f"{STATE_BLOB}.{state['round']}"
        write_atomic(self.folder / name, blob)
        write_atomic(self.folder / STATE, json.dumps({**state, "blob": name}))
        for old in self.folder.glob(f"{STATE_BLOB}.*"):
            if old.name != name and not old.name.endswith(".tmp"):
                old.unlink(missing_ok=True)

    def load_state(self) -> tuple[dict, bytes] | None:
        path = self.folder / STATE
        if not path.exists():
            return None
        state = json.loads(path.read_text())
        return state, (self.folder / state["blob"]).read_bytes()

    def close(self) -> None:
        if self._events is not None:
            self._events.close()
            self._events = None
