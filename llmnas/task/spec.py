"""TaskSpec: what the user asked for, typed. The words become one in task/requirements.py (rules) or
llm/spec_reader.py (a model, cross-checked by the rules); `resolve` fills the rest from the data."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmnas.errors import UserError


class SpecError(UserError):
    """Requirements that cannot describe a search (a contradiction, an impossible limit)."""


BYTES_PER_PARAM = 4  # weights are trained and exported as float32
# Quality floors: the metric each bounds, and whether the bound is a minimum (True) or a maximum.
FLOORS: dict[str, tuple[str, bool]] = {
    "accuracy": ("val_acc", True),
    "balanced_accuracy": ("val_balanced_acc", True),
    "f1": ("val_f1", True),
    "r2": ("val_r2", True),
    "mae": ("val_mae", False),
    "rmse": ("val_rmse", False),
}
REGRESSION_FLOORS = ("r2", "mae", "rmse")
# What a priority orders by: the objective and its metric (quality is the task's validation score).
PRIORITIES: dict[str, str] = {
    "quality": "quality",
    "size": "params",
    "latency": "latency_ms",
    "flops": "flops",
}
Priority = Literal["quality", "size", "latency", "flops"]
# Size words aim at a multiple of the task's linear model (never a fixed count): "tiny" 2x, "small" 10x.
SIZE_FACTORS = {"minimal": 1, "tiny": 2, "small": 10}


class TaskSpec(BaseModel):
    """What the user asked for. Limits are hard (over one rejects); floors are the quality asked for;
    priorities (most important first) choose among what passes and shape the reward; targets are soft."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str = ""
    task: Literal["classification", "regression"] = "classification"
    num_classes: int | None = Field(None, ge=1)  # the output width: 1 for regression
    input_shape: tuple[int, ...] | None = None
    modality: Literal["image", "sequence", "tabular"] | None = None
    max_params: int | None = Field(None, gt=0)
    max_bytes: int | None = Field(None, gt=0)  # a size in bytes: enforced as max_params at BYTES_PER_PARAM
    max_flops: int | None = Field(None, gt=0)
    max_latency_ms: float | None = Field(None, gt=0)
    max_memory_mb: float | None = Field(None, gt=0)  # peak memory of inference, MiB
    floors: dict[str, float] = {}
    target_params: int | None = Field(None, gt=0)
    target_latency_ms: float | None = Field(None, gt=0)
    priorities: tuple[Priority, ...] = ()
    tolerance: float = Field(0.005, ge=0, le=1)  # validation score a cost-first priority may give up
    size_word: Literal["minimal", "tiny", "small"] | None = None  # sets target_params relative to the task
    hints: tuple[str, ...] = ()
    assumptions: tuple[str, ...] = ()
    not_understood: tuple[str, ...] = ()
    contradictions: tuple[str, ...] = ()
    reward_alpha: float = -0.07
    reward_beta: float = -0.07

    @model_validator(mode="before")
    @classmethod
    def _older_runs(cls, data: Any) -> Any:
        """Specs written before floors and priorities (run.json, state.json of older runs) still load."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "notes" in data:
            data["not_understood"] = tuple(data.pop("notes") or ())
        floors = dict(data.get("floors") or {})
        for old, new in (("target_mae", "mae"), ("target_rmse", "rmse"), ("target_r2", "r2")):
            if (value := data.pop(old, None)) is not None:
                floors.setdefault(new, value)
        if floors:
            data["floors"] = floors
        return data

    @model_validator(mode="after")
    def _consistent(self) -> TaskSpec:
        if self.num_classes is not None and (self.num_classes == 1) != (self.task == "regression"):
            raise ValueError("classification needs at least 2 classes; regression has one output")
        for name, value in self.floors.items():
            if name not in FLOORS:
                raise ValueError(f"unknown quality floor {name!r}; known: {', '.join(FLOORS)}")
            if not math.isfinite(value) or (
                name in ("accuracy", "balanced_accuracy", "f1") and not 0 < value <= 1
            ):
                raise ValueError(f"floor {name} must be a fraction in (0, 1], got {value}")
            if name in ("mae", "rmse") and value <= 0:
                raise ValueError(f"floor {name} must be positive, got {value}")
        if len(set(self.priorities)) != len(self.priorities):
            raise ValueError(f"priorities repeat: {self.priorities}")
        return self

    def resolve(
        self, *, input_shape: tuple[int, ...], num_classes: int, modality: str, task: str = "classification"
    ) -> TaskSpec:
        """Fill what the text left open from the dataset; a contradiction is a SpecError."""
        if "task" in self.model_fields_set and self.task != task:
            raise SpecError(
                f"the requirements ask for {self.task} but --data holds a {task} target: "
                + (
                    "ask for regression, or pick a label column of classes"
                    if task == "regression"
                    else "pick a numeric target (--label-column), or ask for classification"
                )
            )
        if self.num_classes is not None and self.num_classes != num_classes:
            raise SpecError(
                f"the requirements say {self.num_classes} classes but the data has {num_classes}: "
                "fix the text or pick the matching --data"
            )
        if self.input_shape is not None and math.prod(self.input_shape) != math.prod(input_shape):
            raise SpecError(
                f"the requirements say input shape {self.input_shape} but the data has {input_shape}"
            )
        wrong = [f for f in self.floors if (f in REGRESSION_FLOORS) != (task == "regression")]
        if wrong:
            raise SpecError(
                f"the requirements set a {', '.join(wrong)} floor but --data holds a {task} target: "
                + (
                    "use MAE, RMSE or R² for regression"
                    if task == "regression"
                    else "use accuracy, F1 for classes"
                )
            )
        update: dict[str, Any] = {
            "num_classes": num_classes,
            "input_shape": input_shape,
            "modality": modality,
            "task": task,
        }
        if self.size_word and self.target_params is None:
            linear = linear_params(input_shape, num_classes)
            target = linear * SIZE_FACTORS[self.size_word]
            if self.max_params:
                target = min(target, self.max_params)
            update["target_params"] = target
        return self.model_copy(update=update)

    @property
    def latency_goal(self) -> bool:
        """The words ask about latency (a limit, a target or a priority): only then does it rank models."""
        return bool(self.max_latency_ms or self.target_latency_ms or "latency" in self.priorities)

    def order(self) -> tuple[Priority, ...]:
        """The priorities with quality added last when the words did not place it."""
        return self.priorities if "quality" in self.priorities else (*self.priorities, "quality")

    def limits(self) -> dict[str, float | None]:
        return {
            "params": self.max_params,
            "bytes": self.max_bytes,
            "flops": self.max_flops,
            "latency_ms": self.max_latency_ms,
            "memory_mb": self.max_memory_mb,
        }

    def to_json(self) -> dict:
        """The documented reading of the requirements (`search --dry-run --json`, docs/usage.md)."""
        return {
            "text": self.text,
            "task": self.task,
            "task_stated": "task" in self.model_fields_set,
            "num_classes": self.num_classes,
            "input": {
                "modality": self.modality,
                "shape": list(self.input_shape) if self.input_shape else None,
            },
            "limits": self.limits(),
            "floors": dict(self.floors),
            "targets": {"params": self.target_params, "latency_ms": self.target_latency_ms},
            "priorities": list(self.order()),
            "tolerance": self.tolerance,
            "assumptions": list(self.assumptions),
            "not_understood": list(self.not_understood),
            "contradictions": list(self.contradictions),
        }

    def floor_lines(self) -> list[str]:
        """The quality floors, readable ("accuracy >= 0.95")."""
        return [
            f"{name} {'>=' if FLOORS[name][1] else '<='} {value:g}" for name, value in self.floors.items()
        ]

    def summary(self) -> str:
        """A few readable lines for the terminal and the report."""
        outputs = f"classes: {self.num_classes}" if self.task == "classification" else "outputs: 1 value"
        lines = [f"task: {self.task}, {outputs}, input: {self.input_shape} ({self.modality})"]
        limits = [
            f"params <= {self.max_params:,}" if self.max_params else "",
            f"size <= {self.max_bytes:,} bytes" if self.max_bytes else "",
            f"latency <= {self.max_latency_ms:g} ms" if self.max_latency_ms else "",
            f"FLOPs <= {self.max_flops:,}" if self.max_flops else "",
            f"memory <= {self.max_memory_mb:g} MiB" if self.max_memory_mb else "",
        ]
        targets = [
            f"params ~ {self.target_params:,}" if self.target_params else "",
            f"latency ~ {self.target_latency_ms:g} ms" if self.target_latency_ms else "",
        ]
        lines.append("limits: " + (", ".join(x for x in limits if x) or "none"))
        lines.append("floors: " + (", ".join(self.floor_lines()) or "none"))
        lines.append(
            "priorities: "
            + " > ".join(self.order())
            + (f" (within {self.tolerance:g} of the best score)" if self.order()[0] != "quality" else "")
        )
        lines.append("targets: " + (", ".join(x for x in targets if x) or "none"))
        if self.hints:
            lines.append("read: " + ", ".join(self.hints))
        lines += [f"assumed: {line}" for line in self.assumptions]
        lines += [f"contradiction: {line}" for line in self.contradictions]
        if self.not_understood:
            lines.append(
                "not understood (kept for the model, not searched for): " + " | ".join(self.not_understood)
            )
        return "\n".join(lines)


def linear_params(input_shape: tuple[int, ...], outputs: int) -> int:
    """Parameters of a linear model of this input: the task's reference size."""
    return math.prod(input_shape) * outputs + outputs
