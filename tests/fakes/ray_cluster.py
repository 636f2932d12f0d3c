"""A real multi-node Ray cluster on this machine: each node is its own ``ray start`` process with its own
temp folder, ports and resources, so a test or a benchmark can add nodes and kill them.

Every node starts in a process group of its own and with a marker in its environment (Ray renames its
processes, but their environment stays); :meth:`LocalCluster.stop` kills each group and then every
process that still carries the marker. It never runs ``ray stop``, which would stop other people's
clusters on a shared machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MARKER = "LLMNAS_TEST_RAY_CLUSTER"
RAY = [sys.executable, "-m", "ray.scripts.scripts"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _client_server_port() -> list[str]:
    """A free port for the Ray Client server where this Ray has one (ray[client], ray[default]): its default,
    10001, would clash between clusters. Ray core starts no such server and refuses the flag."""
    from ray._private.utils import get_ray_client_dependency_error

    return [] if get_ray_client_dependency_error() else ["--ray-client-server-port", str(free_port())]


def cluster_env() -> dict[str, str]:
    """What the nodes and a driver of this cluster need: token auth off (Ray >= 2.59 turns it on by
    default) and a fast health check."""
    return {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        # The head's health check declares a killed node dead in about 1.5 s (Ray's default: ~15 s), so that
        # the rounds after a kill shrink whatever the machine's speed.
        "RAY_health_check_period_ms": "500",
        "RAY_health_check_timeout_ms": "500",
        "RAY_health_check_failure_threshold": "3",
    }


class Node:
    def __init__(self, name: str, proc: subprocess.Popen, temp: Path):
        self.name, self.proc, self.temp = name, proc, temp

    def kill(self) -> None:
        """SIGKILL every process of this node at once (its raylet, workers and agents): a node lost."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


class LocalCluster:
    """``head()`` then ``add()`` nodes; ``stop()`` (always: use it as a context manager) kills them all."""

    def __init__(self):
        # Short paths: Ray's unix socket paths must stay under ~107 characters.
        self.root = Path(tempfile.mkdtemp(prefix="llmnas-rc-", dir="/tmp"))
        self.nodes: list[Node] = []
        self.address = f"127.0.0.1:{free_port()}"
        self.log = self.root / "ray-start.log"

    def _start(self, name: str, args: list[str], cpus: int, resources: dict[str, float]) -> Node:
        temp = self.root / name
        temp.mkdir()
        cmd = [
            *RAY,
            "start",
            *args,
            "--node-ip-address",
            "127.0.0.1",
            "--num-cpus",
            str(cpus),
            "--num-gpus",
            "0",
            "--resources",
            json.dumps(resources),
            "--temp-dir",
            str(temp),
            "--object-store-memory",
            str(80 * 2**20),
            "--dashboard-agent-listen-port",
            "0",
            "--disable-usage-stats",
            "--block",
        ]
        with self.log.open("a") as log:
            proc = subprocess.Popen(
                cmd,
                env={**cluster_env(), MARKER: str(self.root)},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        node = Node(name, proc, temp)
        self.nodes.append(node)
        return node

    def head(self, cpus: int = 1, **resources: float) -> Node:
        host, port = self.address.split(":")
        args = [
            "--head",
            "--port",
            port,
            "--include-dashboard",
            "false",
            "--dashboard-port",
            str(free_port()),
        ]
        node = self._start("head", [*args, *_client_server_port()], cpus, resources)
        self.wait_for(cpus)
        return node

    def add(self, name: str, cpus: int = 1, **resources: float) -> Node:
        return self._start(name, ["--address", self.address], cpus, resources)

    def cpus(self) -> float:
        """The cluster's CPUs as `ray status` reports them (0 when it does not answer)."""
        done = subprocess.run(
            [*RAY, "status", "--address", self.address],
            env=cluster_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        for line in done.stdout.splitlines():
            if line.strip().endswith(" CPU") and "/" in line:
                return float(line.split("/")[1].split()[0])
        return 0.0

    def wait_for(self, cpus: float, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while self.cpus() != cpus:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the cluster did not reach {cpus} CPUs; see {self.log}")
            time.sleep(1)

    def stop(self) -> list[int]:
        """Kill every process the nodes started; the pids that needed the marker scan (should be none)."""
        for node in self.nodes:
            node.kill()
        for node in self.nodes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.proc.wait(timeout=10)
        stragglers = marked(str(self.root))
        for pid in stragglers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)
        return stragglers

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def marked(value: str) -> list[int]:
    """Live processes of ours whose environment carries ``MARKER=value``."""
    needle = f"{MARKER}={value}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                status = (entry / "status").read_text()
                if "State:\tZ" not in status:
                    pids.append(int(entry.name))
    return pids
