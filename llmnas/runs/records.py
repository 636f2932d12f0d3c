"""The run folder's two JSON records, one pydantic model each: run.json (:class:`RunRecord`) and the
checkpoint's state.json (:class:`Checkpoint`). RunStore writes and reads them; files of older runs
still load (fields added since have defaults; an older spec's keys are migrated by task/spec.TaskSpec).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from llmnas.errors import UserError

BLOB = r"^state\.safetensors\.\d+$"  # runs/layout.RunLayout.state_blob's names


class RunRecord(BaseModel):
    """run.json: the run's config and spec as dumped (kept as plain data, so that show and the report read
    a run whose config this version would refuse; resume types them), versions, seed, creation time.
    ``resume --budget`` and a refinement rewrite ``config`` and ``spec``; keys it does not know are kept."""

    model_config = ConfigDict(extra="allow")

    config: dict[str, Any] = {}
    spec: dict[str, Any] = {}
    versions: dict[str, Any] = {}
    seed: int | None = None
    created: str | None = None  # local time, as str(datetime) writes it

    @classmethod
    def read(cls, path: Path) -> RunRecord:
        """run.json at ``path``; one that cannot be read is a UserError saying why."""
        try:
            data = json.loads(path.read_text())
        except ValueError as exc:
            raise UserError(f"{path} is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise UserError(f"{path} does not hold a JSON object")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise UserError(f"{path}: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None

    @field_validator("config", "spec", "versions", mode="before")
    @classmethod
    def _object(cls, value: Any) -> Any:
        """A run folder written by hand with something else than an object here reads as empty."""
        return value if isinstance(value, dict) else {}

    @field_validator("created", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return None if value is None else str(value)


class Checkpoint(BaseModel):
    """state.json: the search's learning state after its last finished round; the proposer's tensors are
    in the file ``blob`` names, written before this record."""

    model_config = ConfigDict(extra="ignore")

    round: int = Field(ge=0)
    proposed: int = Field(ge=0)
    rng: dict[str, Any]  # numpy's bit generator state
    policy: dict[str, Any]
    archive: dict[str, Any]
    proposer: dict[str, Any]  # the proposer's own state (its tensors: the blob)
    known: list[str]  # evaluated candidate ids in processing order
    decisions: dict[str, list[int]]
    failures: list[dict[str, Any]]  # recent failures a repair may take up
    stats: dict[str, int]
    best_id: str | None = None
    spec: dict[str, Any] | None = None  # the spec it ran under (older checkpoints: none)
    to_scale: list[str] = []  # front members queued for compound scaling
    scaled: list[str] = []  # candidates the scale operator has taken
    blob: str = Field("", pattern=f"{BLOB}|^$")  # set by RunStore.save_state
