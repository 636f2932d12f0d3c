"""Safe artefacts (issue 14, item 6): what `llmnas export`, best/ and `eval --out` hand to a user.

The runnable model a user gets is data: model.onnx (traced in the sandbox, checked on the driver with
onnxruntime against the sandbox's own predictions) and weights.safetensors. The candidate's code is
architecture.py, labelled untrusted; the loader model.py (written by llmnas) runs it only on opt-in,
except llmnas's own template code, re-rendered at export and pinned by its sha256.

Hostile candidates (tests/hostile/artefact_*.py, also in the sandbox corpus):

- ``artefact_arms_outside_sandbox`` behaves in the sandbox and arms itself where LLMNAS_HOSTILE_ARM is
  set (the sandbox scrubs the environment): the export, its ONNX and `from model import load; load()`
  never run it; load(trust_code=True) does, which shows the payload is live;
- ``artefact_torchscript_file_write`` writes a file through torch.from_file(shared=True) on every
  forward pass, the payload a sandbox-traced TorchScript used to carry: no .pt reaches an export and the
  ONNX writes nothing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import uuid
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn
from conftest import logged
from fakes.list_proposer import ListProposer
from safetensors.torch import save_model

from llmnas.candidate import checks
from llmnas.cli import main
from llmnas.config import RunConfig
from llmnas.engine.loop import Search
from llmnas.engine.scoring import accuracy
from llmnas.execute.local import LocalPool
from llmnas.propose import space
from llmnas.results import onnx_check
from llmnas.results.export import BUNDLE_FILES, BestExport, export_candidate, rendered_by_llmnas
from llmnas.run import make_spec
from llmnas.runs.layout import CODE
from llmnas.runs.store import RunStore
from llmnas.task.datasets import Dataset
from llmnas.task.preprocess import Preprocessing
from sandbox.protocol import ONNX_FILE, PRED_FILES, WEIGHTS_FILE, TrainConfig

HOSTILE = Path(__file__).parent / "hostile"
ARM = "LLMNAS_HOSTILE_ARM"
HOSTILE_NAMES = ("artefact_arms_outside_sandbox", "artefact_torchscript_file_write")
CODE_SUFFIXES = (".pt", ".pth", ".jit", ".zip", ".pkl", ".pickle", ".so", ".pyc")


def _export_module(folder: Path):
    """Import an export's model.py the way `from model import load` does (llmnas's loader only)."""
    spec = importlib.util.spec_from_file_location(f"exported_{uuid.uuid4().hex[:8]}", folder / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _onnx_logits(path: Path, x: np.ndarray) -> np.ndarray:
    """The documented safe way: onnxruntime, default CPU provider, no custom ops."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.astype(np.float32)})[0]


def _export_onnx(model: nn.Module, path: Path, shape=(1, 8, 8), dynamic: bool = True) -> None:
    kwargs = {"dynamic_axes": {"input": {0: "batch"}, "logits": {0: "batch"}}} if dynamic else {}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model.eval(),
            (torch.zeros(2, *shape),),
            str(path),
            input_names=["input"],
            output_names=["logits"],
            opset_version=17,
            dynamo=False,
            **kwargs,
        )


# --------------------------------------------------------------------------- the hostile run
def _id(code: str) -> str:
    return checks.candidate_id(checks.normalise(code))


@pytest.fixture(scope="module")
def hostile_run(pool: LocalPool, digits: Dataset, tmp_path_factory):
    """A search over the two hostile candidates (let past the static checks, as an unknown escape
    would be), with LLMNAS_HOSTILE_ARM set on the host all along: the sandbox must keep it out."""
    folder = tmp_path_factory.mktemp("artefacts")
    marker = folder / "armed.txt"
    codes = {name: (HOSTILE / f"{name}.py").read_text() for name in HOSTILE_NAMES}
    real = checks.check

    def check(code: str, allowed_imports=checks.DEFAULT_ALLOWED_IMPORTS, **limits):
        if code in codes.values():
            normalised = checks.normalise(code)
            return checks.Checked(normalised, checks.candidate_id(normalised))
        return real(code, allowed_imports, **limits)

    cfg = RunConfig(
        requirements="classify 8x8 grayscale digits into 10 classes",
        data="digits",
        max_samples=300,
        seed=0,
        budget=len(codes),
        workers=2,
        train=TrainConfig(max_steps=60, eval_every=30),
        limits=pool.limits,
        repair_attempts=0,
    )
    spec = make_spec(cfg, digits)
    info = {"config": cfg.model_dump(mode="json"), "spec": spec.model_dump(mode="json")}
    store = RunStore.create(folder / "run", info, cfg.requirements)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ARM, str(marker))
        mp.setattr(checks, "check", check)
        try:
            Search(
                cfg, spec, digits, ListProposer(list(codes.values())), pool, store,
                progress=False, listeners=[BestExport()],
            ).run(cfg.budget)  # fmt: skip
        finally:
            store.close()
    events = {e["candidate_id"]: e for e in logged(store.folder) if e["type"] == "evaluation"}
    ids = {name: _id(code) for name, code in codes.items()}
    for name, cid in ids.items():
        assert events[cid]["ok"], f"{name} should behave in the sandbox: {events[cid]}"
    assert not marker.exists(), f"the sandbox let a candidate arm itself: {marker.read_text()}"
    return {"run": store.folder, "ids": ids, "marker": marker, "events": events}


def _export(run: Path, cid: str, out: Path, capsys, *extra: str) -> str:
    capsys.readouterr()
    assert main(["export", str(run), "--candidate", cid, "--out", str(out), *extra]) == 0
    return capsys.readouterr().out


def _no_code_artefact(folder: Path) -> None:
    names = sorted(p.name for p in folder.iterdir())
    assert set(names) <= set(BUNDLE_FILES), names
    assert not [n for n in names if n.endswith(CODE_SUFFIXES)], names


def test_export_of_a_candidate_that_arms_itself_elsewhere_never_runs_it(
    hostile_run, digits: Dataset, tmp_path, capsys, monkeypatch
):
    marker, cid = hostile_run["marker"], hostile_run["ids"]["artefact_arms_outside_sandbox"]
    monkeypatch.setenv(ARM, str(marker))  # the user's machine: where the candidate arms itself
    monkeypatch.delenv("LLMNAS_TRUST_CODE", raising=False)
    out = tmp_path / "x"
    printed = _export(hostile_run["run"], cid, out, capsys)
    _no_code_artefact(out)
    assert "UNTRUSTED" in printed and "architecture.py" in printed and "data  model.onnx" in printed
    readme = (out / "README.md").read_text()
    assert "untrusted code" in readme and "trust_code=True" in readme
    assert (out / "architecture.py").read_text().startswith("# UNTRUSTED CODE")

    # The safe way: the ONNX, with onnxruntime. It reproduces the reported accuracy and runs nothing.
    logits = _onnx_logits(out / ONNX_FILE, digits.x_val_raw)  # raw samples: the graph preprocesses
    assert accuracy(logits, digits.y_val) == pytest.approx(hostile_run["events"][cid]["metrics"]["val_acc"])
    assert not marker.exists(), "running the ONNX ran the candidate's code"

    # `from model import load; load()` as a user types it: the scored ONNX, and nothing of the code.
    env = {**os.environ, ARM: str(marker)}
    env.pop("LLMNAS_TRUST_CODE", None)
    done = subprocess.run(
        [sys.executable, "-c", "from model import load; m = load(); print(m.module, m.session is not None)"],
        cwd=out, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout.split() == ["None", "True"], done.stderr
    assert not marker.exists(), f"load() without opt-in ran the candidate: {marker.read_text()}"

    module = _export_module(out)
    labels = module.load().predict(digits.x_val_raw)
    assert np.mean(labels == digits.y_val) == pytest.approx(hostile_run["events"][cid]["metrics"]["val_acc"])
    assert not marker.exists()

    # With the opt-in the code runs, and it was armed: the refusal above is what kept it off.
    with torch.no_grad():
        module.load(trust_code=True).module(torch.from_numpy(digits.x_val[:2]))
    assert marker.read_text().splitlines() == [
        "llmnas-hostile armed at import",
        "llmnas-hostile armed at build",
        "llmnas-hostile armed at forward",
    ]
    marker.unlink()
    monkeypatch.setenv("LLMNAS_TRUST_CODE", "1")
    module.load()
    assert marker.exists()
    marker.unlink()


def test_best_folder_holds_no_code_artefact_and_labels_the_code(hostile_run):
    best = hostile_run["run"] / "best"
    _no_code_artefact(best)
    assert (best / ONNX_FILE).is_file()
    assert "untrusted code" in (best / "README.md").read_text()
    assert json.loads((best / "metrics.json").read_text())["candidate"] in hostile_run["ids"].values()


def test_a_file_writing_payload_cannot_reach_the_user(
    hostile_run, digits: Dataset, tmp_path, capsys, monkeypatch
):
    """What a sandbox-traced TorchScript carried (from_file(shared=True) + copy_ in forward) has no
    artefact to travel in: the export holds no .pt, and its ONNX runs without touching the file."""
    cid = hostile_run["ids"]["artefact_torchscript_file_write"]
    source = hostile_run["run"] / "candidates" / cid
    assert not [p.name for p in source.iterdir() if p.name.endswith(CODE_SUFFIXES)]
    out = tmp_path / "x"
    _export(hostile_run["run"], cid, out, capsys)
    _no_code_artefact(out)
    assert (out / ONNX_FILE).is_file()
    monkeypatch.chdir(tmp_path)  # where the payload would write payload.bin
    logits = _onnx_logits(out / ONNX_FILE, digits.x_val_raw)
    assert logits.shape == (len(digits.x_val), digits.num_classes)
    assert not (tmp_path / "payload.bin").exists(), "running the ONNX wrote the payload's file"
    graph = onnx.load(str(out / ONNX_FILE))
    assert {n.domain for n in graph.graph.node} <= {"", "ai.onnx"}


def test_an_onnx_that_does_not_match_the_sandbox_is_not_exported(
    hostile_run, digits: Dataset, tmp_path, capsys
):
    """A model.onnx other than the artifact that was scored (a file changed after the run) is not exported."""
    cid = hostile_run["ids"]["artefact_arms_outside_sandbox"]
    candidate = hostile_run["run"] / "candidates" / cid
    original = (candidate / ONNX_FILE).read_bytes()
    forged = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))  # same shapes, other numbers
    try:
        _export_onnx(forged, candidate / ONNX_FILE)
        printed = _export(hostile_run["run"], cid, tmp_path / "x", capsys)
        assert not (tmp_path / "x" / ONNX_FILE).exists()
        assert "is not the artifact that was scored" in printed
        assert "is not the artifact that was scored" in (tmp_path / "x" / "README.md").read_text()
        (candidate / ONNX_FILE).write_bytes(b"\x08\x07not an onnx file")
        printed = _export(hostile_run["run"], cid, tmp_path / "x", capsys, "--force")  # the same folder
        assert not (tmp_path / "x" / ONNX_FILE).exists() and "is not the artifact that was scored" in printed
    finally:
        (candidate / ONNX_FILE).write_bytes(original)


# --------------------------------------------------------------------------- the ONNX check itself
@pytest.fixture(scope="module")
def small() -> tuple[nn.Module, np.ndarray, np.ndarray]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    x = np.random.default_rng(0).normal(size=(41, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).numpy()
    return model, x, pred


def _verify(path: Path, x: np.ndarray, pred: np.ndarray, tmp_path: Path, shape=(1, 8, 8)) -> dict:
    """The check's child logic, in-process (check_onnx runs exactly this in a limited child)."""
    np.save(tmp_path / "x.npy", x, allow_pickle=False)
    np.save(tmp_path / "p.npy", pred, allow_pickle=False)
    request = {"onnx": str(path), "x": str(tmp_path / "x.npy"), "pred": str(tmp_path / "p.npy")}
    return onnx_check.verify({**request, "input_shape": list(shape)})


@pytest.mark.sandbox
def test_the_check_runs_in_a_child_and_accepts_a_faithful_graph(small, tmp_path):
    model, x, pred = small
    _export_onnx(model, tmp_path / "m.onnx")
    ok = onnx_check.check_onnx(tmp_path / "m.onnx", x, pred, (1, 8, 8))
    assert ok.ok and "41 validation inputs" in ok.note, ok
    off = onnx_check.check_onnx(tmp_path / "m.onnx", x, pred + 0.05, (1, 8, 8))
    assert not off.ok and "does not reproduce" in off.note, off


def _with_node(model: onnx.ModelProto, node: onnx.NodeProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    out.graph.node.append(node)
    return out


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("custom_op", "custom operators"),
        ("custom_opset", "non-standard operator sets"),
        ("external_data", "external data"),
        ("function", "defines functions"),
        ("fixed_batch", "cannot run"),
        ("wrong_shape", "input is shaped"),
        ("garbage", "does not parse"),
        ("second_input", "one input named 'input'"),
    ],
)
def test_the_check_rejects_what_is_not_a_plain_faithful_graph(small, tmp_path, case, expected):
    model, x, pred = small
    path = tmp_path / "m.onnx"
    _export_onnx(model, path, dynamic=case != "fixed_batch")
    proto = onnx.load(str(path))
    shape = (1, 8, 9) if case == "wrong_shape" else (1, 8, 8)
    if case == "custom_op":
        proto = _with_node(proto, onnx.helper.make_node("Payload", ["logits"], ["unused"], domain="evil"))
    elif case == "custom_opset":
        proto.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    elif case == "external_data":
        weight = proto.graph.initializer[0]
        weight.ClearField("raw_data")
        weight.ClearField("float_data")
        weight.data_location = onnx.TensorProto.EXTERNAL
        entry = weight.external_data.add()
        entry.key, entry.value = "location", "/etc/passwd"
    elif case == "function":
        proto.functions.append(onnx.helper.make_function("local", "F", ["a"], ["b"], [], [], []))
    elif case == "second_input":
        proto.graph.input.append(onnx.helper.make_tensor_value_info("extra", onnx.TensorProto.FLOAT, [1]))
    if case == "garbage":
        path.write_bytes(b"\x08\x07garbage" * 10)
    else:
        onnx.save(proto, str(path))
    answer = _verify(path, x, pred, tmp_path, shape)
    assert not answer["ok"] and expected in answer["note"], answer


@pytest.mark.sandbox
def test_the_check_prepends_the_preprocessing_and_writes_the_graph_it_checked(small, tmp_path):
    """With a preprocessing the child checks (and writes) the graph that takes raw samples; a graph
    that already uses the names the preprocessing adds is refused."""
    model, x, pred = small
    _export_onnx(model, tmp_path / "m.onnx")
    pre = Preprocessing("image", (8, 8, 1), channels_last=True, divide=4.0)
    raw = (np.moveaxis(x, 1, -1) * 4).astype(np.float32)  # what preprocess.apply maps back to x
    out = tmp_path / "composed.onnx"
    ok = onnx_check.check_onnx(
        tmp_path / "m.onnx", raw, pred, (1, 8, 8), preprocessing=pre.to_json(), out=out
    )
    assert ok.ok and "raw validation samples" in ok.note, ok
    np.testing.assert_allclose(_onnx_logits(out, raw), pred, rtol=1e-5, atol=1e-5)
    wrong = Preprocessing("image", (8, 8, 1), channels_last=True, divide=2.0)
    bad = onnx_check.check_onnx(tmp_path / "m.onnx", raw, pred, (1, 8, 8), preprocessing=wrong.to_json())
    assert not bad.ok and "does not reproduce" in bad.note
    proto = _with_node(
        onnx.load(str(tmp_path / "m.onnx")), onnx.helper.make_node("Identity", ["logits"], ["llmnas_pre_0"])
    )
    onnx.save(proto, str(tmp_path / "n.onnx"))
    np.save(tmp_path / "x.npy", raw, allow_pickle=False)
    np.save(tmp_path / "p.npy", pred, allow_pickle=False)
    request = {
        "onnx": str(tmp_path / "n.onnx"),
        "x": str(tmp_path / "x.npy"),
        "pred": str(tmp_path / "p.npy"),
    }
    answer = onnx_check.verify({**request, "input_shape": [1, 8, 8], "preprocessing": pre.to_json()})
    assert not answer["ok"] and "keeps for the preprocessing" in answer["note"], answer


@pytest.mark.sandbox
def test_checks_share_one_warm_checker_that_is_replaced_when_it_dies(small, tmp_path):
    model, x, pred = small
    _export_onnx(model, tmp_path / "m.onnx")
    checker = onnx_check._Checker()
    request = {"timeout_s": 60, "cwd": str(tmp_path), "memory_bytes": 4 << 30, "cpu_s": 61, "out": None}
    np.save(tmp_path / "x.npy", x, allow_pickle=False)
    np.save(tmp_path / "p.npy", pred, allow_pickle=False)
    request |= {"onnx": str(tmp_path / "m.onnx"), "x": "x.npy", "pred": "p.npy", "input_shape": [1, 8, 8]}
    pids = []
    for _ in range(2):
        assert checker.ask(request).ok
        pids.append(checker.proc.pid)
    checker.proc.kill()
    checker.proc.wait()
    assert checker.ask(request).ok
    assert pids[0] == pids[1] != checker.proc.pid
    lost = checker.ask(request | {"cwd": str(tmp_path / "gone")})  # its child dies before it can answer
    assert not lost.ok and "ended without an answer" in lost.note
    assert checker.ask(request).ok and checker.proc.pid != pids[0]


@pytest.mark.sandbox
def test_a_check_that_hangs_or_crashes_is_a_rejection(small, tmp_path, monkeypatch):
    model, x, pred = small
    _export_onnx(model, tmp_path / "m.onnx")
    slow = onnx_check.check_onnx(tmp_path / "m.onnx", x, pred, (1, 8, 8), timeout_s=0.01)
    assert not slow.ok and "took over" in slow.note
    assert not onnx_check.check_onnx(tmp_path / "none.onnx", x, pred, (1, 8, 8)).ok
    (tmp_path / "link.onnx").symlink_to(tmp_path / "m.onnx")
    assert "regular file" in onnx_check.check_onnx(tmp_path / "link.onnx", x, pred, (1, 8, 8)).note


# --------------------------------------------------------------------------- llmnas's own templates
def _template_run(tmp_path: Path, code: str, decisions: tuple[int, ...]) -> tuple[Path, str]:
    """A run folder holding one candidate: code, weights from building it here (the test runs its
    own template code, never a candidate's) and no ONNX."""
    run = tmp_path / "run"
    normalised = checks.normalise(code)
    cid = checks.candidate_id(normalised)
    folder = run / "candidates" / cid
    folder.mkdir(parents=True)
    (folder / CODE).write_text(normalised)
    namespace: dict = {"__name__": "template"}
    exec(compile(space.render("image", decisions), "template", "exec"), namespace)  # our own template
    save_model(namespace["build_model"]((1, 8, 8), 10), str(folder / WEIGHTS_FILE))
    np.save(folder / PRED_FILES["val"], np.zeros((3, 10), np.float32), allow_pickle=False)
    return run, cid


def test_template_code_is_marked_and_loads_without_opt_in_while_unchanged(tmp_path, monkeypatch):
    monkeypatch.delenv("LLMNAS_TRUST_CODE", raising=False)
    decisions = space.sample_uniform("image", np.random.default_rng(1))
    code = space.render("image", decisions)
    assert rendered_by_llmnas(checks.normalise(code), "image", decisions)
    assert not rendered_by_llmnas(code.replace("nn.ReLU()", "nn.GELU()") + "\n# x\n", "image", decisions)
    assert not rendered_by_llmnas(code, "image", ())  # no decisions: a mutation or an LLM's code
    run, cid = _template_run(tmp_path, code, decisions)
    shape = dict(input_shape=(1, 8, 8), num_classes=10, metrics={})
    made = export_candidate(run, cid, tmp_path / "t", modality="image", decisions=decisions, **shape)
    assert made.template and not made.onnx.ok and "wrote none" in made.onnx.note
    readme = (tmp_path / "t" / "README.md").read_text()
    assert "generated from llmnas's own templates" in readme and "No `model.onnx`" in readme
    module = _export_module(tmp_path / "t")
    assert module.load().module(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    with pytest.raises(ValueError, match="no data.json"):  # exported without the run's data
        module.load().predict(np.zeros((1, 8, 8)))
    with (tmp_path / "t" / "architecture.py").open("a") as f:
        f.write("\n# edited after the export\n")
    with pytest.raises(module.UntrustedCodeError):
        module.load()
    # Forged decisions (a run log can be edited) do not make other code a template.
    forged = tuple(0 if d else 1 for d in decisions)
    made = export_candidate(run, cid, tmp_path / "u", modality="image", decisions=forged, **shape)
    assert not made.template
    forged_module = _export_module(tmp_path / "u")
    with pytest.raises(forged_module.UntrustedCodeError):
        forged_module.load()


@pytest.mark.sandbox
def test_eval_out_keeps_data_only_and_says_so(tmp_path, capsys):
    from conftest import GOOD_CNN

    (tmp_path / "m.py").write_text(GOOD_CNN)
    out = tmp_path / "out"
    status = main(
        ["eval", str(tmp_path / "m.py"), "--data", "digits", "--max-samples", "300", "--steps", "30",
         "--out", str(out)]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert "none of them is code" in printed and f"the code is {tmp_path / 'm.py'}" in printed
    assert "model.onnx" in printed and "checked" in printed
    assert (out / ONNX_FILE).is_file()
    assert not [p.name for p in out.iterdir() if p.name.endswith(CODE_SUFFIXES)]
