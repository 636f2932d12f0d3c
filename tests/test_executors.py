"""Every Executor keeps the same contract: the local pool and Ray run tests/executor_contract.py.

The Ray tests start their own local instance (2 CPUs, no dashboard, token auth off, a 100 MB object
store) and are skipped when ray is not installed (pip install 'llmnas[ray]').
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import sys
from pathlib import Path

import executor_contract as contract
import pytest
from conftest import logged, wait_until, working_in

from llmnas.cli import main
from llmnas.errors import UserError
from llmnas.execute.local import LocalPool
from llmnas.execute.ray import RayExecutor, import_ray
from llmnas.task.datasets import load_dataset
from sandbox.protocol import (
    ONNX_FILE,
    PRED_FILES,
    RESULT_FILE,
    WEIGHTS_FILE,
    Job,
    Limits,
    Metrics,
    Result,
    Stage,
)

# Module fixtures that start a pool or Ray (see conftest): the tests using them are marked sandbox.
SANDBOX_FIXTURES = {"make_executor", "ray_instance"}

try:
    import ray
except ImportError:
    ray = None

needs_ray = pytest.mark.skipif(ray is None, reason="ray is not installed: pip install 'llmnas[ray]'")
KINDS = ["local", pytest.param("ray", marks=needs_ray)]
# Each test executor's actor takes half a CPU, so the shared executor and a second one fit on 2 CPUs.
RAY_CPUS_PER_TASK = 0.5


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", seed=0, max_samples=300)


@pytest.fixture(scope="module")
def ray_instance():
    """A private local Ray instance for this module (never a cluster that happens to be running)."""
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"  # Ray >= 2.59 turns token auth on for local clusters
    ray.init(
        address="local",
        num_cpus=2,
        num_gpus=0,
        include_dashboard=False,
        object_store_memory=100 * 2**20,
        log_to_driver=False,
    )
    yield ray
    ray.shutdown()
    if saved is None:
        os.environ.pop("RAY_AUTH_MODE", None)
    else:
        os.environ["RAY_AUTH_MODE"] = saved


@pytest.fixture(scope="module")
def make_executor(request, data):
    """``make_executor(kind, workers, limits)``: a new executor holding ``data``."""

    def make(kind: str, workers: int, limits: Limits = contract.CONTRACT_LIMITS, **kw):
        if kind == "ray":
            request.getfixturevalue("ray_instance")
            executor = RayExecutor(workers, limits, cpus_per_task=RAY_CPUS_PER_TASK, **kw)
        else:
            executor = LocalPool(workers, limits, **kw)
        data.write_worker_files(executor.data_dir)
        return executor

    return make


@pytest.fixture(scope="module", params=KINDS)
def executor(request, make_executor):
    with make_executor(request.param, 2) as ex:
        yield ex


@pytest.mark.parametrize("check", contract.CHECKS, ids=lambda check: check.__name__)
def test_contract(check, executor, data, tmp_path):
    check(executor, data, tmp_path)


@pytest.mark.parametrize("kind", KINDS)
def test_timeout_ends_at_timeout(kind, make_executor, data, tmp_path):
    with make_executor(kind, 1, contract.TIMEOUT_LIMITS) as ex:
        contract.timeout_ends_at_timeout(ex, data, tmp_path)


@pytest.mark.parametrize("kind", KINDS)
def test_close_is_prompt(kind, make_executor, data, tmp_path):
    contract.close_is_prompt(make_executor(kind, 1, Limits(timeout_s=3600)), data, tmp_path)


# -- Ray only ---------------------------------------------------------------------------------------


def _kill_worker(executor: RayExecutor, not_pid: int | None = None) -> int:
    """SIGKILL the (single) actor process of ``executor`` once its candidate runs in the actor's sandbox;
    its pid."""

    def placed() -> dict | None:
        info = executor.workers_info()
        return info[0] if info and info[0]["pid"] != not_pid else None

    worker = wait_until(placed, "a (replacement) worker")
    wait_until(lambda: working_in(Path(worker["root"]), "work-"), "the call to reach the worker's sandbox")
    os.kill(worker["pid"], signal.SIGKILL)
    return worker["pid"]


@needs_ray
def test_ray_worker_death_retries_the_candidate(make_executor, data, tmp_path):
    with make_executor("ray", 1, Limits(timeout_s=30)) as ex:
        assert contract.run(ex, data, contract.GOOD, tmp_path / "warm", "warm").ok  # zygote warm
        fut = ex.submit(
            contract.make_job(ex, data, contract.SLEEP.format(seconds=3), "slow"), tmp_path / "slow"
        )
        dead_root = Path(ex.workers_info()[0]["root"])
        first = _kill_worker(ex)
        result = fut.result(timeout=120)
        assert result.ok, result.message
        assert ex.restarts == 1
        assert ex.workers_info()[0]["pid"] != first
        assert not dead_root.exists(), "the new worker did not clean up after the dead one"
        assert not working_in(dead_root), "the dead worker's sandbox still runs"
        for name in (*PRED_FILES.values(), WEIGHTS_FILE):
            assert (tmp_path / "slow" / name).is_file()
        assert contract.recorded(tmp_path / "slow") == result


@needs_ray
def test_ray_worker_dying_twice_marks_the_candidate(make_executor, data, tmp_path):
    with make_executor("ray", 1, Limits(timeout_s=30)) as ex:
        out = tmp_path / "doomed"
        fut = ex.submit(contract.make_job(ex, data, contract.SLEEP.format(seconds=20), "doomed"), out)
        first = _kill_worker(ex)
        _kill_worker(ex, not_pid=first)
        result = fut.result(timeout=120)
        assert not result.ok and result.stage == Stage.crash
        assert "ray worker died twice" in result.message
        assert contract.recorded(out) == result
        assert ex.restarts == 2
        assert contract.run(ex, data, contract.GOOD, tmp_path / "after", "after").ok  # still works


@needs_ray
def test_ray_worker_that_stops_answering_is_given_up_at_the_deadline(make_executor, data, tmp_path):
    """A frozen worker (SIGSTOP: no death Ray could notice) is given up on at the deadline (the
    candidate's limit plus a margin for starting actors and zygotes) and replaced; the executor goes on."""
    with make_executor("ray", 1, Limits(timeout_s=4), retries=0) as ex:
        assert contract.run(ex, data, contract.GOOD, tmp_path / "warm", "warm").ok  # zygote warm
        margin, ex.deadline_s = ex.deadline_s, 6  # 4 s + 2 min by default: a test cannot wait that long
        frozen = ex.workers_info()[0]["pid"]
        os.kill(frozen, signal.SIGSTOP)
        try:
            result = contract.run(ex, data, contract.GOOD, tmp_path / "frozen", "frozen")
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(frozen, signal.SIGKILL)
        assert not result.ok and result.stage == Stage.crash, result
        assert "ray worker died once" in result.message and "timed out" in result.message
        assert contract.recorded(tmp_path / "frozen") == result and ex.restarts == 1
        ex.deadline_s = margin
        assert contract.run(ex, data, contract.GOOD, tmp_path / "after", "after").ok  # a new worker
        assert ex.workers_info()[0]["pid"] != frozen


@needs_ray
def test_ray_slots_are_what_the_cluster_has_room_for_capped_by_workers(ray_instance):
    """The 2-CPU instance at half a CPU per worker has room for 4, at a whole CPU for 2; a cap of 1 is 1;
    the room counts what Ray reports, not the CPUs of this machine."""
    with RayExecutor(None, cpus_per_task=0.5) as ex:
        assert ex.capacity() == 4 == ex.workers
    with RayExecutor(1, cpus_per_task=0.5) as ex:
        assert ex.capacity() == 1
    with RayExecutor(None, cpus_per_task=1) as ex:
        assert ex.capacity() == 2 == ex.workers


@needs_ray
def test_ray_refuses_gpus_the_cluster_does_not_have(ray_instance):
    with pytest.raises(ValueError, match="not enough for one worker"):
        RayExecutor(1, gpus_per_task=1)
    with pytest.raises(UserError, match="--device cuda: no CUDA device is visible in the Ray cluster"):
        RayExecutor(1, device="cuda")
    with RayExecutor(1, device="auto", cpus_per_task=0.5) as ex:
        assert ex.device == "cpu"  # auto without GPUs in the cluster


@needs_ray
def test_cli_search_on_ray_logs_where_each_candidate_ran(ray_instance, tmp_path):
    """--executor ray through the command line on the running instance: --workers 1 caps the rounds at one
    candidate, and every evaluation names the Ray node that ran it."""
    run = tmp_path / "run"
    argv = ["search", "classify 8x8 digits", "--data", "digits", "--max-samples", "300", "--steps", "20"]
    argv += ["--budget", "2", "--executor", "ray", "--workers", "1", "--out", str(run)]
    assert main(argv) == 0
    events = logged(run)
    node = ray_instance.get_runtime_context().get_node_id()
    assert [e["round_size"] for e in events if e["type"] == "proposal"] == [1, 1]
    assert [(e["node"], e["retries"]) for e in events if e["type"] == "evaluation"] == [(node, 0)] * 2


# -- no Ray needed ----------------------------------------------------------------------------------


def test_missing_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(UserError, match=r"llmnas\[ray\]"):
        import_ray()


def test_driver_checks_what_a_node_sends_back(tmp_path):
    """Bytes from a node are validated, never trusted: bad JSON, another id, missing predictions and
    unknown file names are all refused on the driver."""
    ex = object.__new__(RayExecutor)
    ex.limits = Limits()
    job = Job(candidate_id="c1", code="", data_dir="/nowhere", input_shape=(4,), num_classes=2, seed=0)
    ok = Result(candidate_id="c1", ok=True).model_dump_json().encode()
    cases = {
        "junk": ({RESULT_FILE: b"{not json"}, "invalid result"),
        "other": ({RESULT_FILE: Result(candidate_id="c2", ok=True).model_dump_json().encode()}, "another"),
        "bare": ({RESULT_FILE: ok, "../escape.npy": b"x", "evil.py": b"x"}, "did not leave a valid"),
        "none": (None, "no result"),
    }
    for name, (files, message) in cases.items():
        out = tmp_path / name
        result = ex._land(job, files, out)
        assert not result.ok and result.stage == Stage.crash and message in result.message, name
    assert not (tmp_path / "escape.npy").exists()
    assert not (tmp_path / "bare" / "evil.py").exists()
    sealed = Result(
        candidate_id="c1",
        ok=True,
        metrics=Metrics(params=1, flops=0, model_bytes=10**6),
        artifact_sha256=hashlib.sha256(b"graph").hexdigest(),
        weights_sha256=hashlib.sha256(b"w").hexdigest(),
    ).model_dump_json()
    files = {RESULT_FILE: sealed.encode(), WEIGHTS_FILE: b"w", **{n: b"p" for n in PRED_FILES.values()}}
    swapped = ex._land(job, files | {ONNX_FILE: b"other graph"}, tmp_path / "swapped")
    assert not swapped.ok and f"{ONNX_FILE} is not the file sealed" in swapped.message
    fine = ex._land(job, files | {ONNX_FILE: b"graph"}, tmp_path / "fine")
    assert fine.ok and fine.metrics.model_bytes == len(b"graph")  # the file's size, not the worker's word
    assert (tmp_path / "fine" / WEIGHTS_FILE).read_bytes() == b"w"
