"""The sandbox sees only what it needs (sandbox/view.py): datasets shipped with Python packages, other
runs' predictions and event logs, the user's data files, home folders and the source checkout are not
in a candidate's view; a normal candidate still trains and scores, and late imports still work.

The hostile candidates are the corpus files tests/hostile/os_read_{sklearn_digits,other_runs,user_data,
home_and_checkout}.py (the corpus runs them too). Here they run in both pools (`hook`: the audit hook
on; `os`: ``Limits(audit_hook=False)``) with world-readable targets planted first, and each is also run
unconfined on this host to show that the attack finds what it looks for when nothing hides it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pytest
from conftest import GOOD_CNN, OS_LIMITS, evaluate, write_worker_data
from test_sandbox import CHANCE, CORPUS_CFG, CORPUS_MAX_PARAMS, CORPUS_SPEC, REPO, load_corpus

from llmnas.engine.evaluation import judge
from llmnas.execute.local import LocalPool, isolation_env, isolation_prefix
from llmnas.runs.store import RunStore
from llmnas.task.datasets import Dataset
from sandbox import view
from sandbox.protocol import TrainConfig

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="the `os` pool drops to another uid only as root")
NO_VIEW = not isolation_env(Path("/"))
VIEW_ONLY = pytest.mark.skipif(NO_VIEW, reason="no mount namespace here: candidates get no minimal view")
MODES = ("hook", "os")
ATTACKS = ("os_read_sklearn_digits", "os_read_other_runs", "os_read_user_data", "os_read_home_and_checkout")
CASES = {c.name: c for c in load_corpus() if c.name in ATTACKS}
RUN_FILES = ("val_pred.npy", "test_pred.npy", "events.jsonl")
MARK = "llmnas-view"


def _world_readable(folder: Path) -> None:
    for parent, _, files in os.walk(folder):
        os.chmod(parent, 0o755)
        for name in files:
            os.chmod(os.path.join(parent, name), 0o644)


def _plant_run(results: Path, token: str) -> Path:
    """A run folder with a candidate's predictions and an event log, every mode world-readable."""
    run = results / f"{MARK}-{token}"
    cand = run / "candidates" / "c0"
    cand.mkdir(parents=True)
    for name in ("val_pred.npy", "test_pred.npy"):
        np.save(cand / name, np.eye(10, dtype=np.float32), allow_pickle=False)
    (run / "events.jsonl").write_text(json.dumps({"kind": "evaluation", "metrics": {"val_acc": 1.0}}) + "\n")
    (run / "user-data.csv").write_text("x0,x1,label\n0.1,0.2,3\n")
    _world_readable(run)
    return run


@pytest.fixture(scope="module")
def planted():
    """World-readable run folders in the checkout's results/ and in /tmp, a user CSV in the checkout and
    one in the driver's home: what the attacks look for. Removed afterwards."""
    token = uuid.uuid4().hex[:8]
    results = REPO / "results"
    results.mkdir(exist_ok=True)
    tmp_root = Path(tempfile.mkdtemp(prefix=f"{MARK}-"))
    tmp_root.chmod(0o755)
    home_csv = Path.home() / f"{MARK}-{token}.csv"
    made = [_plant_run(results, token), _plant_run(tmp_root / "results", token)]
    home_csv.write_text("x0,x1,label\n0.5,0.6,7\n")
    home_csv.chmod(0o644)
    try:
        yield {"token": token, "runs": made, "home_csv": home_csv}
    finally:
        shutil.rmtree(made[0], ignore_errors=True)
        shutil.rmtree(tmp_root, ignore_errors=True)
        home_csv.unlink(missing_ok=True)


def _values(pool: LocalPool, token: str) -> dict[str, str]:
    return {
        "HOME": str(Path.home()),
        "REPO": str(REPO),
        "DATA_DIR": str(pool.data_dir),
        "TOKEN": token,
    }


def _code(name: str, values: dict[str, str]) -> str:
    return CASES[name].code(values)


def _unconfined(name: str, values: dict[str, str], digits: Dataset) -> str:
    """Run the attack's build_model here, in a plain subprocess: what it finds with nothing hidden."""
    script = (
        "import sys\nns = {}\nexec(compile(sys.stdin.read(), 'attack', 'exec'), ns)\n"
        "try:\n    model = ns['build_model']((1, 8, 8), 10)\nexcept RuntimeError as exc:\n"
        "    print('RAISED', exc)\n    raise SystemExit(0)\n"
        "import numpy as np, torch\nx = torch.from_numpy(np.load(sys.argv[1]))\ny = np.load(sys.argv[2])\n"
        "print('ACC', float((model(x).argmax(1).numpy() == y).mean()))\n"
    )
    with tempfile.TemporaryDirectory() as folder:
        np.save(Path(folder) / "x.npy", digits.x_val.astype(np.float32))
        np.save(Path(folder) / "y.npy", digits.y_val)
        done = subprocess.run(
            [sys.executable, "-c", script, str(Path(folder) / "x.npy"), str(Path(folder) / "y.npy")],
            input=_code(name, values),
            capture_output=True,
            text=True,
            cwd=folder,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="module")
def pools(pool: LocalPool, os_pool: LocalPool) -> dict[str, LocalPool]:
    return {"hook": pool, "os": os_pool}


def _run(pools, mode: str, name: str, digits: Dataset, out: Path, token: str):
    if mode == "os" and os.geteuid() != 0:
        pytest.skip("the `os` pool needs root")
    p = pools[mode]
    code = _code(name, _values(p, token))
    result = evaluate(p, digits, code, out, candidate_id=f"{name[:30]}-{mode}", max_params=CORPUS_MAX_PARAMS)
    return result, judge(result, out, digits, CORPUS_SPEC, CORPUS_CFG)


# --------------------------------------------------------------------------- the attacks work unconfined
def test_the_attacks_find_their_targets_when_nothing_hides_them(planted, pool: LocalPool, digits: Dataset):
    values = _values(pool, planted["token"])
    out = _unconfined("os_read_sklearn_digits", values, digits)
    assert float(out.rsplit("ACC", 1)[1]) > 0.95, out
    out = _unconfined("os_read_other_runs", values, digits)
    assert str(planted["runs"][0] / "candidates" / "c0" / "val_pred.npy") in out, out
    out = _unconfined("os_read_user_data", values, digits)
    assert f"{MARK}-{planted['token']}" in out, out
    out = _unconfined("os_read_home_and_checkout", values, digits)
    assert f"{REPO}/tests" in out, out


# --------------------------------------------------------------------------- and find nothing in the sandbox
@VIEW_ONLY
@pytest.mark.parametrize("mode", MODES)
def test_package_datasets_are_not_in_the_view(mode, pools, digits, planted, tmp_path):
    result, verdict = _run(
        pools, mode, "os_read_sklearn_digits", digits, tmp_path / "digits", planted["token"]
    )
    stdout = (tmp_path / "digits" / "stdout.txt").read_text()
    assert verdict.ok, f"{verdict.stage}: {verdict.message}"
    assert "found: None" in stdout, stdout[-2000:]
    assert verdict.metrics.val_acc < CHANCE and verdict.metrics.test_acc < CHANCE, verdict.metrics


@VIEW_ONLY
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("os_read_other_runs", "run files seen: []"),
        ("os_read_user_data", "data files seen: []"),
        ("os_read_home_and_checkout", "seen: []"),
    ],
)
def test_runs_user_data_homes_and_the_checkout_are_not_in_the_view(
    name, message, mode, pools, digits, planted, tmp_path
):
    result, verdict = _run(pools, mode, name, digits, tmp_path / name, planted["token"])
    assert not result.ok and result.stage.value == "build", result
    assert message in result.message, result.message


# --------------------------------------------------------------------------- what still works
LATE_IMPORTS = """
import math

import torch
import torch.nn as nn


def build_model(input_shape, num_classes):
    import numpy.linalg
    import safetensors.torch
    import torch.distributions
    import torch.fft
    import torch.nn.utils.parametrize
    import torch.utils.flop_counter

    with torch.utils.flop_counter.FlopCounterMode(display=False) as counter:
        torch.fft.rfft(torch.ones(8))
    assert counter.get_total_flops() >= 0
    assert torch.distributions.Normal(0.0, 1.0).sample().shape == ()
    assert numpy.linalg.norm(numpy.ones(4)) == 2.0
    assert safetensors.torch.load(safetensors.torch.save({"w": torch.ones(2)}))["w"].sum() == 2
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
"""


@pytest.mark.parametrize("mode", MODES)
def test_a_normal_candidate_trains_and_scores(mode, pools, digits, tmp_path):
    if mode == "os" and os.geteuid() != 0:
        pytest.skip("the `os` pool needs root")
    steps = TrainConfig(max_steps=100, eval_every=50)  # 20 steps do not get past chance
    result = evaluate(
        pools[mode], digits, GOOD_CNN, tmp_path / "good", candidate_id=f"good-{mode}", train=steps
    )
    verdict = judge(result, tmp_path / "good", digits, CORPUS_SPEC, CORPUS_CFG)
    assert verdict.ok and verdict.metrics.val_acc > CHANCE, (verdict.stage, verdict.message, verdict.metrics)


@pytest.mark.parametrize("mode", MODES)
def test_late_imports_still_work(mode, pools, digits, tmp_path):
    if mode == "os" and os.geteuid() != 0:
        pytest.skip("the `os` pool needs root")
    result = evaluate(pools[mode], digits, LATE_IMPORTS, tmp_path / "late", candidate_id=f"late-{mode}")
    assert result.ok, f"{result.stage}: {result.message}"


@pytest.mark.sandbox
@VIEW_ONLY
def test_the_fresh_worker_gets_the_view_too(digits, planted, tmp_path):
    """``mode="fresh"`` (python -m sandbox.worker per candidate) builds the same view."""
    with LocalPool(1, OS_LIMITS.model_copy(update={"timeout_s": 90}), mode="fresh") as fresh:
        write_worker_data(fresh.data_dir, digits)
        code = _code("os_read_home_and_checkout", _values(fresh, planted["token"]))
        result = evaluate(fresh, digits, code, tmp_path / "fresh", candidate_id="fresh-view")
    assert not result.ok and "seen: []" in result.message, result


PROBE = r"""
import json, os, pathlib, sys
from sandbox import view, worker
from sandbox.mounts import make_private_tmp
assert make_private_tmp()
worker.preload()
plan = view.enter()
folder = pathlib.Path(os.environ["LLMNAS_POOL_ROOT"]) / "warm"
folder.mkdir()
worker.warm_up(folder)
def ls(path):
    try:
        return sorted(os.listdir(path))
    except OSError as exc:
        return exc.strerror
print(json.dumps({
    "etc": ls("/etc"), "dev": ls("/dev"), "repo": ls(sys.argv[1]), "home": ls("/home"),
    "site": [ls(f) for f in plan.masked_folders if f.endswith("sklearn/datasets/data")],
    "describe": view.describe(plan), "root": ls("/"), "ro": os.statvfs(plan.python[0]).f_flag & 1,
}))
"""


@pytest.mark.sandbox
@VIEW_ONLY
def test_the_view_holds_what_it_says_and_the_warm_up_runs_in_it(tmp_path):
    """The zygote's steps (private /tmp, preload, view), then the warm-up evaluation again inside the
    view: torch's late imports and the whole train-and-score path work there."""
    root = Path(tempfile.mkdtemp(prefix=f"{MARK}-pool-"))
    try:
        env = {**os.environ, **isolation_env(root), "PYTHONPATH": str(REPO)}
        cmd = [*isolation_prefix(), sys.executable, "-c", PROBE, str(REPO)]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["etc"] in (["ld.so.cache"], [])
    assert set(seen["dev"]) - {"fd", "stdin", "stdout", "stderr", "shm"} <= {
        *view.DEVICES,
        *(n for n in os.listdir("/dev") if n.startswith("nvidia")),
    }
    assert set(seen["repo"]) <= {"sandbox", ".venv"}, seen["repo"]
    assert seen["home"] == "No such file or directory"
    assert seen["site"] in ([], [[]]), seen["site"]
    assert seen["ro"] == 1, "the Python folders are read-only"
    assert not set(seen["root"]) & {"home", "srv", "mnt", "media", "boot", "bin", "sbin"}, seen["root"]


# --------------------------------------------------------------------------- what the view decides
def test_data_masks_cover_datasets_and_keep_code(tmp_path):
    site = tmp_path / "site-packages"
    files = {
        "pkg/__init__.py": "",
        "pkg/datasets/data/__init__.py": "",
        "pkg/datasets/data/digits.csv.gz": "x",
        "pkg/tables/a.npz": "x",
        "pkg/tables/b.parquet": "x",
        "pkg/tables/deeper/c.csv": "x",
        "pkg/mixed/code.py": "",
        "pkg/mixed/iris.csv": "x",
        "pkg/mixed/notes.txt": "x",
        "sklearn/datasets/descr/digits.rst": "x",
        "other/lib.so": "x",
    }
    for rel, text in files.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(text)
    folders, masked = view.data_masks([str(site)])
    rel = lambda paths: sorted(os.path.relpath(p, site) for p in paths)  # noqa: E731
    assert rel(folders) == ["pkg/tables", "sklearn/datasets/descr"]
    assert rel(masked) == ["pkg/datasets/data/digits.csv.gz", "pkg/mixed/iris.csv"]


def test_the_plan_holds_python_and_the_sandbox_package_only():
    p = view.plan(None)
    assert str(REPO) not in p.python + p.libraries + p.modules
    assert any(m == str(Path(view.__file__).resolve().parent) for m in p.modules + p.python), p.modules
    assert all(not (str(REPO) + os.sep).startswith(x + os.sep) for x in p.python + p.libraries)
    assert not any(Path(x) == Path.home() for x in p.python + p.libraries + p.modules)


# --------------------------------------------------------------------------- without the view
@pytest.mark.sandbox
@ROOT_ONLY
def test_another_run_folder_is_closed_to_a_candidate_uid_even_without_the_view(tmp_path):
    """The driver creates run folders mode 700 (llmnas/runs/store.py): an unprivileged uid cannot list
    them or read a prediction or the event log, even where every folder above is open to all."""
    parent = Path(tempfile.mkdtemp(prefix=f"{MARK}-runs-"))
    parent.chmod(0o755)
    try:
        store = RunStore.create(parent / "run", {"seed": 0}, "anything")
        folder = store.write_candidate("c0", "code")
        for name in ("val_pred.npy", "test_pred.npy"):
            np.save(folder / name, np.eye(3), allow_pickle=False)
            (folder / name).chmod(0o644)
        store.paths.events.write_text("{}\n")
        store.paths.events.chmod(0o644)
        folders = [store.folder, store.paths.candidates, folder]
        files = [*(folder / n for n in RUN_FILES[:2]), store.paths.events, store.paths.run_info]
        pid = os.fork()
        if pid == 0:
            code = 1
            with contextlib.suppress(BaseException):
                os.setgroups([])
                os.setgid(1_999_999)
                os.setuid(1_999_999)
                opened = 0
                for target in folders + files:
                    with contextlib.suppress(PermissionError):
                        os.close(os.open(target, os.O_RDONLY))
                        opened += 1
                    with contextlib.suppress(PermissionError, NotADirectoryError):
                        os.listdir(target)
                        opened += 1
                code = 0 if not opened else 2
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 0, "a candidate uid could list or read another run's files"
        assert store.folder.stat().st_mode & 0o777 == 0o700
    finally:
        shutil.rmtree(parent, ignore_errors=True)
