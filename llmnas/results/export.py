"""A candidate as a standalone bundle for its users, and the files `llmnas eval --out` leaves.

What a bundle holds, and what of it is code (see README's SECURITY section):

- ``model.onnx`` (data): the artifact the sandbox scored (its sha256, sealed by the worker and in the
  event, is checked here and written in data.json), kept when ``results/onnx_check`` loads it with
  onnxruntime and it reproduces the predictions it was scored on; what ``load()`` runs. With the run's
  data the preprocessing is prepended as standard operators (``llmnas_pre_*``): it takes raw samples.
- ``weights.safetensors`` and ``data.json`` (data): the trained tensors; the preprocessing fitted on the
  training split (``task/preprocess.Preprocessing``: numbers and names), the labels as in the user's
  data, and which source samples formed the test split. ``metrics.json``, ``README.md``.
- ``preprocess.py`` (code, llmnas's own ``task/preprocess.py``, copied unchanged): applies data.json.
- ``architecture.py`` (code): the candidate's source, written by a language model unless llmnas rendered
  it from its own templates (``propose/space.render``: re-rendered here from its decisions, compared).
- ``model.py`` (code, written by llmnas): the loader. Importing it runs nothing of architecture.py;
  ``load()`` runs model.onnx; it runs architecture.py only with ``trust_code=True`` (or
  ``LLMNAS_TRUST_CODE=1``), or without model.onnx when it is llmnas's own template output, unchanged (its
  sha256 is pinned in model.py). Its ``Model.predict``/``predict_proba`` take raw data.

Nothing the sandbox wrote runs here; no code artefact of the sandbox (TorchScript, pickles) is handed out.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from llmnas.candidate.checks import normalise
from llmnas.config import RunConfig
from llmnas.errors import UserError
from llmnas.propose import space
from llmnas.results import bundle_text as text
from llmnas.results.onnx_check import OnnxCheck, check_onnx
from llmnas.results.read import leaderboard
from llmnas.runs.layout import CODE, RunLayout, refuse_overwrite
from llmnas.runs.store import RunStore
from llmnas.task import preprocess
from llmnas.task.datasets import Dataset, load_data
from sandbox.protocol import ONNX_FILE, ONNX_INPUT, PRED_FILES, RESULT_FILE, STDOUT_FILE, WEIGHTS_FILE

log = logging.getLogger("llmnas")

LOADER_FILE = "model.py"  # written by llmnas
CODE_FILE = "architecture.py"  # the candidate's code
README_FILE, METRICS_FILE = "README.md", "metrics.json"
DATA_FILE = "data.json"  # the preprocessing, the labels, the test split's samples
PREPROCESS_FILE = "preprocess.py"  # llmnas's task/preprocess.py, which applies DATA_FILE
BUNDLE_FILES = (
    LOADER_FILE,
    PREPROCESS_FILE,
    CODE_FILE,
    WEIGHTS_FILE,
    ONNX_FILE,
    DATA_FILE,
    README_FILE,
    METRICS_FILE,
)
# What older versions put in a bundle: removed when a folder is exported again (best/ each round).
LEGACY_FILES = ("weights.pt", "model.torchscript.pt")
TRUST_ENV = "LLMNAS_TRUST_CODE"


@dataclass(frozen=True)
class Exported:
    """What an export wrote, for the CLI and the caller: where, whether model.onnx is in, which code."""

    folder: Path
    candidate_id: str
    onnx: OnnxCheck
    template: bool  # architecture.py is llmnas's own template output
    preprocessed: bool  # data.json is in: predict() takes raw data
    files: dict[str, str] = field(default_factory=dict)  # name -> "data" or "code"

    def lines(self) -> list[str]:
        """The export for people: each file as data or code, the safe way to run the model."""
        scored = f"the scored network as an ONNX graph, checked: {self.onnx.note}"
        out = [str(self.folder), f"  data  {ONNX_FILE:<20} {scored}"]
        if not self.onnx.ok:
            out[1] = f"  --    {ONNX_FILE:<20} not exported: {self.onnx.note}"
        out.append(f"  data  {WEIGHTS_FILE:<20} trained weights")
        if self.preprocessed:
            out.append(f"  data  {DATA_FILE:<20} preprocessing fitted on the training split, labels")
        else:
            out.append(f"  --    {DATA_FILE:<20} not exported: the run's data could not be read")
        out.append(f"  data  {README_FILE + ', ' + METRICS_FILE:<20} how to use it, metrics")
        out.append(f"  code  {LOADER_FILE:<20} loader written by llmnas (importing it runs nothing else)")
        out.append(f"  code  {PREPROCESS_FILE:<20} llmnas's preprocessing code (model.py uses it)")
        if self.template:
            out.append(f"  code  {CODE_FILE:<20} generated from llmnas's own templates")
        else:
            out.append(
                f"  code  {CODE_FILE:<20} UNTRUSTED: written by a language model; "
                f"runs only with load(trust_code=True) or {TRUST_ENV}=1"
            )
        if self.onnx.ok:
            out.append(f"  run it: from model import load; load().predict(X)  ({ONNX_FILE} with onnxruntime)")
        return out


def rendered_by_llmnas(code: str, modality: str | None, decisions) -> bool:
    """Whether ``code`` is exactly what llmnas's own templates render from ``decisions``. Decisions only
    index fixed choice tables (``propose/space``), so whatever they are (a run log can be edited), a
    match means the code is llmnas's template output."""
    if not decisions or not modality:
        return False
    try:
        rendered = space.render(modality, tuple(int(d) for d in decisions))
        forms = {rendered.strip(), normalise(rendered).strip()}
    except (ValueError, IndexError, KeyError, TypeError):
        return False
    return code.strip() in forms


def _check_candidate_onnx(
    src: Path,
    x_val: np.ndarray | None,
    input_shape: tuple[int, ...],
    preprocessing: preprocess.Preprocessing | None = None,
    out: Path | None = None,
    sealed: str | None = None,
) -> tuple[OnnxCheck, Path | None]:
    """The check of the candidate's model.onnx, which must be the ``sealed`` artifact when given (with
    ``preprocessing`` prepended: ``x_val`` holds raw samples then); the checked graph goes to ``out``."""
    onnx = src / ONNX_FILE
    if not onnx.is_file():
        return OnnxCheck(False, "the sandbox wrote none (the model did not export to ONNX)"), None
    if sealed is not None and hashlib.sha256(onnx.read_bytes()).hexdigest() != sealed:
        return OnnxCheck(False, "the candidate's model.onnx is not the artifact that was scored"), onnx
    if x_val is None:
        return OnnxCheck(False, "it could not be checked (the run's validation data is not available)"), None
    try:
        pred = np.load(src / PRED_FILES["val"], allow_pickle=False)
    except (OSError, ValueError) as exc:
        return OnnxCheck(False, f"it could not be checked (no readable validation predictions: {exc})"), None
    pre = None if preprocessing is None else preprocessing.to_json()
    return check_onnx(onnx, x_val, pred, tuple(input_shape), preprocessing=pre, out=out), onnx


def export_candidate(
    run_dir: Path,
    candidate_id: str,
    out_dir: Path,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    metrics: dict,
    title: str = "llmnas model",
    data: Dataset | None = None,
    modality: str | None = None,
    decisions=(),
    artifact_sha256: str | None = None,
) -> Exported:
    """Write the bundle (``BUNDLE_FILES``) into ``out_dir``. ``data``: the run's, for its preprocessing
    and to check the sandbox's ONNX against its predictions (without it the export holds neither).
    ``modality``/``decisions``: the proposal's, to recognise llmnas's own template code.
    ``artifact_sha256``: the evaluation's, which the candidate's model.onnx must match."""
    src = RunLayout(run_dir).candidate(candidate_id)
    if not (src / WEIGHTS_FILE).is_file():
        raise UserError(f"candidate {candidate_id} has no trained weights in {src}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in (*BUNDLE_FILES, *LEGACY_FILES):  # a folder exported before (best/) keeps nothing stale
        (out_dir / name).unlink(missing_ok=True)
    input_shape = tuple(input_shape)
    code = (src / CODE).read_text().rstrip() + "\n"
    template = rendered_by_llmnas(code, modality, decisions)
    header = text.TEMPLATE_HEADER.format(decisions=list(decisions)) if template else text.UNTRUSTED_HEADER
    source = (header + "\n" + code).encode("utf-8")
    (out_dir / CODE_FILE).write_bytes(source)
    shutil.copyfile(src / WEIGHTS_FILE, out_dir / WEIGHTS_FILE)
    shutil.copyfile(preprocess.__file__, out_dir / PREPROCESS_FILE)
    pre = None if data is None else data.preprocessing
    onnx, onnx_src = _check_candidate_onnx(
        src, None if data is None else data.x_val_raw, input_shape, pre, out_dir / ONNX_FILE, artifact_sha256
    )
    if not onnx.ok and onnx_src is not None:
        log.warning("%s: no %s in the export: %s", candidate_id, ONNX_FILE, onnx.note)
    if data is not None:
        described = {
            "source": data.name,
            "preprocessing": pre.to_json(),
            "test_samples": data.test_samples,
            "artifact_sha256": artifact_sha256,  # the scored graph; model.onnx is it with the preprocessing
        }
        (out_dir / DATA_FILE).write_text(json.dumps(described, indent=1))
    (out_dir / LOADER_FILE).write_text(
        text.LOADER.format(
            code_file=CODE_FILE,
            weights_file=WEIGHTS_FILE,
            onnx_file=ONNX_FILE,
            data_file=DATA_FILE,
            preprocess_file=PREPROCESS_FILE,
            trust_env=TRUST_ENV,
            input_shape=input_shape,
            num_classes=num_classes,
            template_sha=hashlib.sha256(source).hexdigest() if template else None,
            provenance=(
                "generated by llmnas from its own templates."
                if template
                else "UNTRUSTED CODE written by a language model."
            ),
            when=(
                f" (and ``load()`` does where there is no {ONNX_FILE}, while the file is unchanged)"
                if template
                else ""
            ),
        )
    )
    kinds = {
        ONNX_FILE: "data",
        WEIGHTS_FILE: "data",
        DATA_FILE: "data",
        METRICS_FILE: "data",
        README_FILE: "text",
        LOADER_FILE: "code (llmnas)",
        PREPROCESS_FILE: "code (llmnas)",
        CODE_FILE: "code (llmnas template)" if template else "code (UNTRUSTED: written by a language model)",
    }
    if not onnx.ok:
        del kinds[ONNX_FILE]
    if data is None:
        del kinds[DATA_FILE]
    whats = {
        ONNX_FILE: f"the trained network as an ONNX graph; {onnx.note}",
        WEIGHTS_FILE: "the trained weights",
        DATA_FILE: "the preprocessing fitted on the training split, the labels, the test split's samples",
        METRICS_FILE: "the metrics above",
        README_FILE: "this file",
        LOADER_FILE: f"loader written by llmnas; importing it runs nothing of `{CODE_FILE}`",
        PREPROCESS_FILE: f"llmnas's preprocessing code: applies `{DATA_FILE}` to raw data",
        CODE_FILE: "the network's PyTorch code, as evaluated",
    }
    rows = "\n".join(f"| {k} | {_fmt(v)} |" for k, v in metrics.items() if v is not None)
    fmt = {
        "onnx_file": ONNX_FILE,
        "onnx_input": ONNX_INPUT,
        "code_file": CODE_FILE,
        "weights_file": WEIGHTS_FILE,
        "input_shape": input_shape,
        "num_classes": num_classes,
        "note": onnx.note,
        "decisions": list(decisions),
        "data_file": DATA_FILE,
        "sample_shape": None if pre is None else pre.sample_shape,  # the checked ONNX needs the data
        "outside": None if pre is None else text.outside(pre, DATA_FILE),
    }
    fmt |= text.decoding(pre, num_classes)
    (out_dir / README_FILE).write_text(
        text.README.format(
            title=title,
            candidate_id=candidate_id,
            run=Path(run_dir).name,
            rows=rows,
            files="\n".join(f"| `{name}` | {kind} | {whats[name]} |" for name, kind in kinds.items()),
            data_section=(
                text.NO_DATA.format(**fmt)
                if data is None
                else text.data_section(pre, data.name, len(data.test_samples), DATA_FILE)
            ),
            onnx_section=(text.ONNX_USE if onnx.ok else text.NO_ONNX).format(**fmt),
            code_section=(text.CODE_TEMPLATE if template else text.CODE_UNTRUSTED).format(**fmt),
            code_file=CODE_FILE,
            weights_file=WEIGHTS_FILE,
        )
    )
    (out_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=1))
    return Exported(out_dir, candidate_id, onnx, template, data is not None, kinds)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def export_run(
    run_dir: Path, out_dir: Path, candidate_id: str | None = None, *, force: bool = False
) -> Exported:
    """Export one evaluated candidate of a run (default: the leaderboard's first); files already in
    ``out_dir`` under the bundle's names are replaced only with ``force``."""
    store = RunStore.open(run_dir)
    view = store.view()
    evaluations = {cid: e for cid, e in view.evaluations.items() if e.ok}  # the latest, as the leaderboard
    if candidate_id is None:
        rows = leaderboard(run_dir)
        if not rows:
            raise UserError(f"{run_dir} has no passing candidate to export yet")
        candidate_id = rows[0]["candidate_id"]
    if candidate_id not in evaluations:
        raise UserError(f"--candidate {candidate_id}: no passing evaluation of that id in {run_dir}")
    if not force:
        refuse_overwrite([Path(out_dir) / name for name in BUNDLE_FILES], "export")
    record = store.record
    spec = record.spec
    trial = next(t for t in view.trials if t.evaluation is evaluations[candidate_id])
    decisions = trial.proposal.decisions if trial.proposal is not None else []
    try:
        data = load_data(RunConfig.model_validate(record.config))
    except Exception as exc:  # noqa: BLE001 - the data moved or cannot be read: export without ONNX
        log.warning("cannot load the run's data (no %s, no %s in the export): %s", ONNX_FILE, DATA_FILE, exc)
        data = None
    metrics = evaluations[candidate_id].metrics.numbers()
    return export_candidate(
        run_dir,
        candidate_id,
        out_dir,
        input_shape=tuple(spec["input_shape"]),
        num_classes=spec["num_classes"],
        metrics={"candidate": candidate_id, **metrics},
        title=f"llmnas model {candidate_id}",
        data=data,
        modality=spec.get("modality"),
        decisions=decisions,
        artifact_sha256=evaluations[candidate_id].artifact_sha256,
    )


class BestExport:
    """End-of-round listener: keeps best/ in step with the archive's best model, and removes it when a
    refinement rules every candidate out."""

    def __init__(self) -> None:
        self.exported: str | None = None

    def __call__(self, search) -> None:
        best, folder = search.best(), search.store.paths.best
        if best is None:
            shutil.rmtree(folder, ignore_errors=True)
            self.exported = None
            return
        if best.candidate_id == self.exported:
            return
        reported = search.evaluator.done[best.candidate_id].metrics.numbers()
        try:
            export_candidate(
                search.store.folder,
                best.candidate_id,
                folder,
                input_shape=search.data.input_shape,
                num_classes=search.data.num_classes,
                metrics={"candidate": best.candidate_id, **reported, "reward": best.reward},
                title=f"Best model so far: {search.spec.text[:80]}",
                data=search.data,
                modality=search.spec.modality,
                decisions=search.decisions.get(best.candidate_id, ()),
                artifact_sha256=search.evaluator.done[best.candidate_id].artifact_sha256,
            )
            self.exported = best.candidate_id
        except Exception as exc:  # noqa: BLE001 - a bad artefact must not end the search
            log.warning("could not write best/ for %s: %s", best.candidate_id, exc)


# --------------------------------------------------------------------------- llmnas eval --out
EVAL_FILES = {  # what a worker may leave in an `eval --out` folder, and what each is
    RESULT_FILE: "data: the sandbox's report (validated JSON)",
    PRED_FILES["val"]: "data: validation predictions (.npy)",
    PRED_FILES["test"]: "data: test predictions (.npy)",
    WEIGHTS_FILE: "data: trained weights",
    ONNX_FILE: "data: the network as an ONNX graph",
    STDOUT_FILE: "text the candidate printed (untrusted text, not code)",
}


def check_eval_onnx(folder: Path, x_val: np.ndarray, input_shape: tuple[int, ...]) -> OnnxCheck:
    """For ``eval --out``: keep the worker's model.onnx only when it passes the same check as an export
    (it is removed otherwise)."""
    check, onnx = _check_candidate_onnx(Path(folder), x_val, input_shape)
    if not check.ok and onnx is not None:
        onnx.unlink(missing_ok=True)
    return check


def eval_file_lines(folder: Path, code_file: Path, onnx: OnnxCheck | None) -> list[str]:
    """For ``eval --out``: each file the folder holds as data or text, and where the code is."""
    folder = Path(folder)
    out = [f"files in {folder} (none of them is code; the code is {code_file}):"]
    for name, what in EVAL_FILES.items():
        if (folder / name).is_file():
            note = f", checked: {onnx.note}" if name == ONNX_FILE and onnx is not None else ""
            out.append(f"  {name:<20} {what}{note}")
    if onnx is not None and not onnx.ok:
        out.append(f"  {'(no ' + ONNX_FILE + ')':<20} {onnx.note}")
    if (folder / ONNX_FILE).is_file():
        out.append(f'  run it without code: onnxruntime.InferenceSession("{folder / ONNX_FILE}")')
    return out
