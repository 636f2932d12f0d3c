"""A search through the CLI on a real two-node Ray cluster on this machine (tests/fakes/ray_cluster.py):
the head alone, then a second node joins (rounds grow and candidates land on it), then the second node is
killed mid-round (its candidate runs again on the head, nothing is lost, rounds shrink back), and the
driver exits cleanly. Slow (a minute or two, several Ray processes): `pytest -m slow -s` shows the rounds.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import wait_until
from fakes.ray_cluster import LocalCluster, Node, cluster_env

from llmnas.execute.stale import PREFIX

ray = pytest.importorskip("ray", reason="ray is not installed: pip install 'llmnas[ray]'")

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
REQ = "classify 8x8 digits; under 20k parameters"
BUDGET = 14
WORK = re.compile(rf"/{re.escape(PREFIX)}[^/]+/work-")  # a candidate's folder in a node's sandbox


def _events(run: Path) -> list[dict]:
    """The events logged so far (a line still being written is skipped)."""
    try:
        lines = (run / "events.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return []
    events = []
    for line in lines:
        with contextlib.suppress(ValueError):
            events.append(json.loads(line))
    return events


def _wait(run: Path, driver: subprocess.Popen, what: str, until, timeout_s: float = 300) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while True:
        events = _events(run)
        if until(events):
            return events
        assert driver.poll() is None, f"the driver ended ({driver.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _evaluations(events: list[dict]) -> list[dict]:
    return [e for e in events if e["type"] == "evaluation"]


def _round_in_flight(events: list[dict], size: int) -> int | None:
    """The latest round whose ``size`` proposals are all logged and none evaluated yet."""
    proposals = [e for e in events if e["type"] == "proposal"]
    if not proposals:
        return None
    last = proposals[-1]["round"]
    mine = [p for p in proposals if p["round"] == last]
    live = {p["candidate_id"] for p in mine if p["stage"] is None}
    evaluated = {e["candidate_id"] for e in _evaluations(events)}
    full = len(mine) >= size and mine[-1]["round_size"] == size and len(live) == size
    return last if full and not live & evaluated else None


def _parent_and_group(pid: int) -> tuple[int, int]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[2])


def _candidate_on(node: Node) -> bool:
    """Whether a candidate runs on ``node`` now: a process working in a sandbox's candidate folder
    (``WORK``) that descends from a process in the node's process group."""
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError):
            if entry.name.isdigit() and WORK.search(os.readlink(entry / "cwd")):
                pid = int(entry.name)
                while pid > 1:
                    pid, group = _parent_and_group(pid)
                    if group == node.proc.pid:
                        return True
    return False


def test_search_on_two_nodes_lands_on_both_and_survives_losing_one(tmp_path):
    run = tmp_path / "run"
    with LocalCluster() as cluster:
        cluster.head(cpus=1, head_node=1)
        env = {
            **cluster_env(),
            "RAY_ADDRESS": cluster.address,
            "PYTHONPATH": str(ROOT),
            "HF_HUB_OFFLINE": "1",
        }
        argv = ["search", REQ, "--data", "digits", "--max-samples", "300", "--steps", "300", "--seed", "1"]
        argv += ["--budget", str(BUDGET), "--executor", "ray", "--ray-address", "auto", "--out", str(run)]
        with (tmp_path / "driver.log").open("w") as log:
            driver = subprocess.Popen(
                [sys.executable, "-m", "llmnas.cli", *argv],
                env=env,
                cwd=tmp_path,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            first = _wait(run, driver, "a first evaluation", lambda ev: _evaluations(ev))
            head_node = _evaluations(first)[0]["node"]
            second = cluster.add("second", cpus=1, second_node=1)
            _wait(
                run,
                driver,
                "a candidate on the second node",
                lambda ev: any(e["node"] != head_node for e in _evaluations(ev)),
            )
            events = _wait(
                run, driver, "a round of two in flight", lambda ev: _round_in_flight(ev, 2) is not None
            )
            killed_round = _round_in_flight(events, 2)
            wait_until(lambda: _candidate_on(second), "the round's candidate to run on the second node")
            second.kill()
            code = driver.wait(timeout=600)
        finally:
            if driver.poll() is None:
                os.killpg(driver.pid, 9)
                driver.wait()
        output = (tmp_path / "driver.log").read_text()
        stragglers = cluster.stop()
    assert stragglers == [], "processes outlived their node's group"
    assert code == 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]

    events = _events(run)
    proposals = [e for e in events if e["type"] == "proposal"]
    evaluations = _evaluations(events)
    sizes = {p["round"]: p["round_size"] for p in proposals}
    rounds = sorted(sizes)
    print(f"\nrounds (round: size, nodes of its evaluations); second node killed in round {killed_round}")
    for r in rounds:
        nodes = [f"{e['node'][:6]}{'+retry' * e['retries']}" for e in evaluations if e["round"] == r]
        print(f"  {r:2d}: {sizes[r]}  {' '.join(nodes)}")

    live = {p["candidate_id"] for p in proposals if p["stage"] is None}
    assert live == {e["candidate_id"] for e in evaluations}, "a candidate was lost"
    nodes = list(dict.fromkeys(e["node"] for e in evaluations))
    assert len(nodes) == 2 and nodes[0] == head_node, nodes
    retried = [e for e in evaluations if e["retries"]]
    assert retried, "no candidate was running on the second node when it was killed"
    assert all(e["round"] == killed_round and e["node"] == head_node for e in retried), retried
    assert all(e["ok"] for e in retried), retried
    assert sizes[0] == 1 and 2 in sizes.values()
    after = [sizes[r] for r in rounds if r > killed_round]
    assert 1 in after[:-1], f"rounds did not shrink back to the head's one CPU: {after}"
