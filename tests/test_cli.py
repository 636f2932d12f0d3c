"""The command line end to end: a real offline search on a tiny budget, its run folder, its errors."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from llmnas.cli import main
from llmnas.engine.scoring import accuracy
from llmnas.task.datasets import load_dataset

# Module fixtures that start a search (see conftest): the tests using them are marked sandbox.
SANDBOX_FIXTURES = {"run_dir"}

REQ = "classify 8x8 grayscale digits into 10 classes; under 20k parameters; use a pretty colour"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run"
    code = main(
        [
            "search",
            REQ,
            "--data",
            "digits",
            "--budget",
            "6",
            "--workers",
            "2",
            "--steps",
            "120",
            "--seed",
            "3",
            "--out",
            str(out),
            "--json",
        ]
    )
    assert code == 0
    return out


def test_search_writes_the_run_folder(run_dir: Path):
    for name in (
        "run.json",
        "requirements.md",
        "events.jsonl",
        "state.json",
        "best/model.py",
        "best/architecture.py",
        "best/model.onnx",
        "best/weights.safetensors",
        "best/README.md",
        "report.html",
        "plots/pareto.png",
        "plots/progress.png",
    ):
        assert (run_dir / name).is_file(), name
    info = json.loads((run_dir / "run.json").read_text())
    assert info["seed"] == 3 and info["spec"]["max_params"] == 20_000
    assert info["spec"]["num_classes"] == 10 and info["spec"]["input_shape"] == [1, 8, 8]
    assert "use a pretty colour" in info["spec"]["not_understood"]
    assert "torch" in info["versions"]
    assert REQ in (run_dir / "requirements.md").read_text()
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    proposals = [e for e in events if e["type"] == "proposal"]
    evaluations = [e for e in events if e["type"] == "evaluation"]
    assert len(proposals) == 6
    assert evaluations and all("reward" in e for e in evaluations)
    for e in evaluations:
        folder = run_dir / "candidates" / e["candidate_id"]
        assert (folder / "model.py").is_file() and (folder / "result.json").is_file()
        if e["ok"]:
            assert 0.0 <= e["metrics"]["val_acc"] <= 1.0 and e["metrics"]["params"] <= 20_000


def test_best_model_is_standalone_and_reproduces_its_validation_accuracy(run_dir: Path):
    source = (run_dir / "best" / "model.py").read_text()
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
    }
    allowed = {"torch", "safetensors", "onnxruntime", "numpy", "json", "os", "sys", "types", "hashlib"}
    assert imported <= allowed, imported
    spec = importlib.util.spec_from_file_location("best_model", run_dir / "best" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = module.load(
        trust_code=True
    )  # our own test run: its code is read (the default refuses mutated code)
    data = load_dataset("digits", seed=3)
    with torch.no_grad():
        logits = net.module(torch.from_numpy(data.x_val)).numpy()
    reported = json.loads((run_dir / "best" / "metrics.json").read_text())
    assert accuracy(logits, data.y_val) == pytest.approx(reported["val_acc"], abs=1e-9)
    assert reported["val_acc"] > 0.5


def test_best_model_runs_as_a_script_without_llmnas(run_dir: Path, tmp_path: Path):
    """As a script the loader runs no code of the search (it says how to run the model); imported from
    another folder, with the opt-in, it builds and runs the network with torch alone."""
    best = run_dir / "best"
    shown = subprocess.run(
        [sys.executable, "-I", str(best / "model.py")], capture_output=True, text=True, timeout=120
    )
    assert shown.returncode == 0 and "onnxruntime" in shown.stderr
    code = f"import sys, torch; sys.path.insert(0, {str(best)!r}); from model import load, INPUT_SHAPE; " + (
        "print(load(trust_code=True).module(torch.zeros(1, *INPUT_SHAPE)).shape)"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "torch.Size([1, 10])" in result.stdout


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["search"],
        ["resume"],
        ["refine"],
        ["eval"],
        ["export"],
        ["report"],
        ["list"],
        ["show"],
        ["dashboard"],
    ],
)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["search", "classify", "--budget", "0"], "--budget"),
        (["search", "classify", "--budget", "many"], "--budget"),
        (["search", "classify", "--seed", "x"], "--seed"),
        (["search", "classify", "--workers", "-2"], "--workers"),
        (["search", "classify", "--steps", "1.5"], "--steps"),
        (["search", "classify", "--timeout", "0"], "--timeout"),
        (["search", "classify", "--strategy", "magic"], "--strategy"),
        (["search", "classify", "--frobnicate"], "--frobnicate"),
        (["search", "classify", "--data", "no/such/file.npz"], "--data"),
        (["search", "classify", "--data", "imagenet22k"], "--data"),
        (["search", "classify", "--llm", "gpt-9"], "--llm"),
        (["search", "classify into 5 classes", "--data", "digits"], "5 classes"),
        (["search", "   "], "requirements"),
        (["resume", "/no/such/run"], "run folder"),
        (["eval", "/no/such/model.py"], "no such model file"),
    ],
)
def test_bad_input_is_one_clear_line_naming_the_flag(argv, flag, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert flag in err
    assert "Traceback" not in err
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


@pytest.mark.sandbox
def test_console_script_reports_a_bad_value_without_traceback(tmp_path):
    exe = Path(sys.executable).with_name("llmnas")
    result = subprocess.run(
        [str(exe), "search", "x", "--budget", "-1"], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert result.returncode == 2
    assert "--budget" in result.stderr and "Traceback" not in result.stderr


def test_list_and_show_read_the_run(run_dir: Path, capsys):
    assert main(["list", "--results", str(run_dir.parent), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["run"] for r in rows] == [run_dir.name] and rows[0]["proposed"] == 6
    assert main(["show", str(run_dir), "--json", "--top", "2"]) == 0
    board = json.loads(capsys.readouterr().out)
    assert 1 <= len(board) <= 2 and board[0]["rank"] == 1
    assert (
        board[0]["candidate_id"] == json.loads((run_dir / "best" / "metrics.json").read_text())["candidate"]
    )


def test_export_reproduces_validation_accuracy_with_onnx_and_weights(run_dir: Path, tmp_path: Path, capsys):
    """The ONNX file (data, checked against the sandbox) gives the reported accuracy with onnxruntime;
    the PyTorch loader gives it too, running architecture.py only when it may: llmnas's own template
    code, or the user's opt-in."""
    board = json.loads(
        subprocess.run(
            [sys.executable, "-m", "llmnas.cli", "show", str(run_dir), "--json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    cid = board[-1]["candidate_id"]  # any candidate, not only the best
    capsys.readouterr()
    assert main(["export", str(run_dir), "--candidate", cid, "--out", str(tmp_path / "x")]) == 0
    printed = capsys.readouterr().out
    out = tmp_path / "x"
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        ["model.py", "preprocess.py", "architecture.py", "weights.safetensors", "model.onnx", "data.json"]
        + ["README.md", "metrics.json"]
    )
    readme = (out / "README.md").read_text()
    assert cid in readme and 'onnxruntime.InferenceSession("model.onnx"' in readme
    assert printed.splitlines()[0] == str(out)
    assert (
        "data  model.onnx" in printed and "code  architecture.py" in printed and "code  model.py" in printed
    )
    data = load_dataset("digits", seed=3)
    reported = board[-1]["val_acc"]
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx_logits = session.run(None, {"input": data.x_val_raw.astype(np.float32)})[0]
    assert accuracy(onnx_logits, data.y_val) == pytest.approx(reported, abs=1e-9)

    spec = importlib.util.spec_from_file_location("exported", out / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    template = "generated from llmnas's own templates" in printed
    assert template == ("generated from llmnas's own templates" in readme)
    if not template:  # a mutated candidate: code no template rendered
        assert "UNTRUSTED" in printed and "untrusted code" in readme
    labels = module.load().predict(data.x_val_raw)  # the scored ONNX by default: no code of the search runs
    assert np.mean(labels == data.y_val) == pytest.approx(reported, abs=1e-9)
    with torch.no_grad():
        eager = module.load(trust_code=True).module(torch.from_numpy(data.x_val)).numpy()
    assert accuracy(eager, data.y_val) == pytest.approx(reported, abs=1e-9)
    assert main(["export", str(run_dir), "--candidate", "nope", "--out", str(tmp_path / "y")]) == 2


def test_export_and_traces_never_overwrite_the_users_files_without_force(
    run_dir: Path, tmp_path: Path, capsys
):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "README.md").write_text("my notes")
    (out / "model.py").write_text("my model")
    assert main(["export", str(run_dir), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "would overwrite" in err and "README.md" in err and "model.py" in err and "--force" in err
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "model.py"]
    assert (out / "README.md").read_text() == "my notes" and (out / "model.py").read_text() == "my model"
    assert main(["export", str(run_dir), "--out", str(out), "--force"]) == 0
    assert (out / "README.md").read_text() != "my notes" and (out / "weights.safetensors").is_file()

    traces = tmp_path / "traces.jsonl"
    traces.write_text("mine\n")
    assert main(["traces", str(run_dir), "--out", str(traces)]) == 2
    assert traces.read_text() == "mine\n"
    assert main(["traces", str(run_dir), "--out", str(traces), "--force"]) == 0
    assert traces.read_text().startswith("{")


@pytest.mark.sandbox
def test_the_parsed_spec_is_printed_before_the_search_with_what_was_not_understood(tmp_path: Path, capsys):
    text = "classify digits; under 100 KB; use GELU everywhere"
    args = ["--data", "digits", "--max-samples", "300", "--budget", "1", "--workers", "1", "--steps", "20"]
    assert main(["search", text, *args, "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    spec = out[out.index("Task spec:") :]
    assert "params <= 25,000" in spec and "100 KB of float32 weights" in spec
    assert "not understood (kept for the model, not searched for): use GELU everywhere" in spec
    assert out.index("Task spec:") < out.index("[   1]"), "the spec came after the first evaluation"


@pytest.mark.sandbox
def test_dry_run_prints_spec_data_budget_and_an_estimate_and_starts_no_run(tmp_path: Path, capsys):
    args = ["--data", "digits", "--max-samples", "300", "--budget", "10", "--workers", "2", "--steps", "80"]
    assert main(["search", REQ, *args, "--out", str(tmp_path / "r"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "Task spec:" in out and "params <= 20,000" in out
    assert "Data: digits:" in out and "10 classes" in out
    assert "Training: 80 steps of batch" in out and "budget 10 candidates on 2 workers" in out
    estimate = next(line for line in out.splitlines() if line.startswith("Estimate"))
    assert (
        "one probe of 50 steps" in estimate
        and "s per candidate" in estimate
        and "min for the search" in estimate
    )
    assert not (tmp_path / "r").exists()


def test_dry_run_json_prints_the_parsed_spec_as_one_object(tmp_path: Path, capsys):
    text = (
        "classify 8x8 digits; fits in 32 KB; at least 95% accuracy; latency matters more than size; use GELU"
    )
    args = ["--data", "digits", "--max-samples", "300", "--tolerance", "0.01", "--out", str(tmp_path / "r")]
    assert main(["search", text, *args, "--dry-run", "--json"]) == 0
    spec = json.loads(capsys.readouterr().out)
    assert (spec["task"], spec["num_classes"], spec["input"]) == (
        "classification",
        10,
        {"modality": "image", "shape": [1, 8, 8]},
    )
    assert spec["limits"] == {
        "params": 8000,
        "bytes": 32000,
        "flops": None,
        "latency_ms": None,
        "memory_mb": None,
    }
    assert spec["floors"] == {"accuracy": 0.95} and spec["tolerance"] == 0.01
    assert spec["priorities"] == ["latency", "size", "quality"]
    assert spec["not_understood"] == ["use GELU"] and spec["contradictions"] == []
    assert spec["data"]["samples"]["train"] > 0 and not (tmp_path / "r").exists()


def test_search_refuses_a_folder_of_other_files(tmp_path: Path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "data.csv").write_text("x,y\n1,2\n")
    assert main(["search", REQ, "--data", "digits", "--budget", "1", "--out", str(mine)]) == 2
    assert "is not empty and holds no run" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["data.csv"] and (
        mine / "data.csv"
    ).read_text() == "x,y\n1,2\n"


@pytest.mark.sandbox
def test_a_config_file_sets_the_run_and_flags_override_it(tmp_path, capsys):
    (tmp_path / "run.toml").write_text(
        'llm = "offline"\nbudget = 2\nseed = 4\nworkers = 2\nmax_samples = 300\n'
        "[train]\nmax_steps = 30\nbatch_size = 32\n"
    )
    out = tmp_path / "r"
    assert (
        main(
            [
                "search",
                "classify digits",
                "--config",
                str(tmp_path / "run.toml"),
                "--seed",
                "9",
                "--out",
                str(out),
                "--json",
            ]
        )
        == 0
    )
    cfg = json.loads((out / "run.json").read_text())["config"]
    assert (cfg["budget"], cfg["seed"], cfg["train"]["max_steps"], cfg["train"]["batch_size"]) == (
        2,
        9,
        30,
        32,
    )
    capsys.readouterr()
    (tmp_path / "bad.toml").write_text("budget = -3\n")
    assert main(["search", "classify", "--config", str(tmp_path / "bad.toml")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--config" in err and "budget" in err
    (tmp_path / "broken.toml").write_text("budget = = 3\n")
    assert main(["search", "classify", "--config", str(tmp_path / "broken.toml")]) in (2, 3)
    assert "--config" in capsys.readouterr().err


@pytest.mark.sandbox
def test_doctor_names_every_layer_and_its_state(capsys):
    status = main(["doctor"])
    lines = capsys.readouterr().out.splitlines()
    layers = {line.split()[0]: line.split(None, 1)[1] for line in lines}
    assert {
        "netns",
        "pidns",
        "mountns",
        "ipcns",
        "utsns",
        "tmpfs",
        "seccomp",
        "cgroup",
        "uid_drop",
    } <= layers.keys()
    assert all(state.startswith(("on", "off", "fallback")) for state in layers.values())
    assert status == (0 if not any(s.startswith("off") for s in layers.values()) else 1)


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["search", "classify digits", "--stpes", "80"], "did you mean --steps?"),
        (["serch", "classify digits"], "did you mean search?"),
        (["export", "results/x", "--out", "o", "--candiate", "c1"], "did you mean --candidate?"),
    ],
)
def test_a_mistyped_flag_or_command_gets_did_you_mean(argv, hint, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert hint in err and len(err.strip().splitlines()) == 1
