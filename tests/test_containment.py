"""Containment per candidate (issue 14): each layer on its own, then hostile candidates through pools.

The hostile files (tests/hostile/os_*.py named below) also run in test_sandbox's corpus; here they run
where the attack needs a setup of its own: twice in the same slot (what one candidate leaves, the next
must not see), next to a unix socket the test listens on, in a pool without the tmpfs (fresh mode).
Both pools run each one: `hook` (audit hook on) and `os` (``Limits(audit_hook=False)``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
from conftest import GOOD_CNN, OS_LIMITS, SANDBOX_LIMITS, evaluate, wait_until, working_in, write_worker_data

from llmnas.execute.local import LocalPool
from llmnas.task.datasets import Dataset
from sandbox import cgroup, libc, seccomp
from sandbox.cleanup import remove_tree
from sandbox.layers import active_layers
from sandbox.protocol import Limits, Result
from sandbox.watch import Watch

HOSTILE = Path(__file__).parent / "hostile"
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="the OS layers under test need a root driver")
MODES = {"hook": SANDBOX_LIMITS, "os": OS_LIMITS}
NOBODY = 65534
# Module fixtures that start a pool (see conftest): the tests using them are marked sandbox.
SANDBOX_FIXTURES = {"single"}


def hostile(name: str, **values: str) -> tuple[str, dict[str, str]]:
    """A corpus file's code with placeholders filled, and its header (expect/message per mode)."""
    source = (HOSTILE / f"{name}.py").read_text()
    for key, value in values.items():
        source = source.replace("{{" + key + "}}", value)
    header = {}
    for line in source.splitlines():
        if not line.startswith("#"):
            break
        key, _, value = line[1:].partition(":")
        header[key.strip()] = value.strip()
    return source, header


def expected(header: dict[str, str], mode: str) -> tuple[str, str]:
    return header.get(f"expect-{mode}", header["expect"]), header.get(f"message-{mode}", header["message"])


def assert_ends(result: Result, stage: str, message: str, what: str) -> None:
    assert not result.ok, f"{what}: ended ok"
    assert result.stage.value == stage and message in result.message, (
        f"{what}: {result.stage}: {result.message}"
    )


@pytest.fixture(scope="module")
def single(digits: Dataset):
    """One-slot pools per mode: consecutive candidates share the slot (uid, zygote)."""
    pools = {mode: LocalPool(1, limits) for mode, limits in MODES.items()}
    try:
        for p in pools.values():
            write_worker_data(p.data_dir, digits)
        yield pools
    finally:
        for p in pools.values():
            p.close()


def in_child(fn) -> dict:
    """Run ``fn`` in a forked child (where a seccomp filter may be installed) and return its dict."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            out = json.dumps(fn()).encode()
        except BaseException as exc:  # noqa: BLE001
            out = json.dumps({"error": repr(exc)}).encode()
        os.write(write, out)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    return json.loads(data)


def _errno_of(call) -> int:
    try:
        result = call()
    except OSError as exc:
        return exc.errno
    with contextlib.suppress(Exception):
        result.close()
    return 0


# --------------------------------------------------------------------------- the layers report
@pytest.mark.sandbox
def test_active_layers_names_every_layer_and_says_why():
    layers = active_layers()
    names = {"netns", "pidns", "mountns", "ipcns", "utsns", "seccomp", "cgroup", "tmpfs", "uid_drop"}
    assert names | {"audit_hook"} == set(layers)
    assert all(v.startswith(("on", "off: ", "fallback: ")) and len(v) > 10 for v in layers.values()), layers
    if os.geteuid() == 0:
        off = [k for k in names - {"cgroup"} if not layers[k].startswith("on")]
        assert not off, f"as root these layers should hold here: {[layers[k] for k in off]}"


@pytest.mark.sandbox
def test_active_layers_do_not_import_llmnas():
    code = "import sys, sandbox.layers as m; m.active_layers(); print(any(k.startswith('llmnas') for k in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=HOSTILE.parent.parent
    )
    assert done.stdout.strip() == "False", done.stderr


# --------------------------------------------------------------------------- seccomp
@pytest.mark.sandbox
@pytest.mark.skipif(seccomp.supported() is not None, reason=f"no seccomp here: {seccomp.supported()}")
def test_seccomp_refuses_sockets_namespaces_and_mounts_and_allows_the_rest():
    def probe() -> dict:
        seccomp.install(allow_inet=False)
        pid = os.fork()
        if pid == 0:
            os._exit(7)
        thread_ran = []
        t = threading.Thread(target=thread_ran.append, args=(1,))
        t.start()
        t.join()
        pair = socket.socketpair()
        pair[0].sendall(b"x")
        return {
            "unix": _errno_of(lambda: socket.socket(socket.AF_UNIX)),
            "inet": _errno_of(lambda: socket.socket(socket.AF_INET)),
            "netlink": _errno_of(lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW)),
            "vsock": _errno_of(lambda: socket.socket(40, socket.SOCK_STREAM)),
            "userns": _errno_of(lambda: libc.unshare(libc.CLONE_NEWUSER)),
            "mount": _errno_of(lambda: libc.mount("x", "/tmp", "tmpfs")),
            "fork": os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]),
            "thread": thread_ran,
            "socketpair": pair[1].recv(1).decode(),
        }

    seen = in_child(probe)
    assert seen == {
        "unix": errno.EPERM,
        "inet": errno.EPERM,
        "netlink": errno.EPERM,
        "vsock": errno.EPERM,
        "userns": errno.EPERM,
        "mount": errno.EPERM,  # even as root
        "fork": 7,
        "thread": [1],
        "socketpair": "x",
    }, seen


@pytest.mark.sandbox
@pytest.mark.skipif(seccomp.supported() is not None, reason=f"no seccomp here: {seccomp.supported()}")
def test_seccomp_leaves_ip_sockets_to_the_network_namespace_when_asked():
    seen = in_child(lambda: (seccomp.install(allow_inet=True), {"inet": _errno_of(socket.socket)})[1])
    assert seen == {"inet": 0}, seen


def test_seccomp_programs_check_the_architecture_first():
    for machine, (arch, _) in seccomp.ARCHES.items():
        code = seccomp.program(machine)
        assert len(code) % 8 == 0 and len(code) // 8 < 4096
        assert int.from_bytes(code[12:16], "little") == arch  # second insn: jeq AUDIT_ARCH
        assert int.from_bytes(code[-4:], "little") == seccomp.RET_ALLOW


# --------------------------------------------------------------------------- cleanup
def _deep_tree(root: Path, levels: int) -> None:
    root.mkdir()
    fd = os.open(root, os.O_RDONLY)
    for level in range(levels):
        os.mkdir("dddddddddd", dir_fd=fd)
        os.close(os.open("file", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd))
        child = os.open("dddddddddd", os.O_RDONLY, dir_fd=fd)
        if level % 700 == 699:
            os.fchmod(fd, 0)
        os.close(fd)
        fd = child
    os.symlink("/etc", "link-out", dir_fd=fd)
    os.close(fd)


def test_remove_tree_survives_deep_unreadable_trees(tmp_path):
    target = tmp_path / "outside.txt"
    target.write_text("keep me")
    tree = tmp_path / "tree"
    _deep_tree(tree, 3500)
    os.symlink(target, tree / "link")
    assert remove_tree(tree)
    assert not tree.exists() and target.read_text() == "keep me"
    assert remove_tree(tmp_path / "missing")


@pytest.mark.sandbox
@ROOT_ONLY
def test_remove_tree_fixes_modes_as_an_unprivileged_owner():
    """Without root's disregard for modes: a mode-000 folder of one's own is opened after a chmod."""
    base = Path(tempfile.mkdtemp(prefix="llmnas-test-"))
    base.chmod(0o777)

    def build_and_remove() -> dict:
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        tree = base / "tree"
        _deep_tree(tree, 1500)
        (tree / "ro").mkdir()
        (tree / "ro" / "f").write_text("x")
        (tree / "ro").chmod(0o500)
        return {"removed": remove_tree(tree), "exists": tree.exists()}

    try:
        assert in_child(build_and_remove) == {"removed": True, "exists": False}
    finally:
        remove_tree(base)


# --------------------------------------------------------------------------- cgroup and watcher
@pytest.mark.sandbox
def test_cgroup_counts_all_processes_of_a_candidate():
    group = cgroup.create(f"llmnas-test-{uuid.uuid4().hex[:8]}", 128, 16, 1.0)
    if group is None:
        pytest.skip("no cgroup here (no delegated v2 group, no writable v1 memory group): the watcher holds")
    try:
        pid = os.fork()
        if pid == 0:
            group.join()
            kids = [os.fork() for _ in range(3)]
            if 0 in kids:
                block = b"\1" * (60 << 20)  # 3 x 60 MiB + the parent's own pages > 128 MiB
                time.sleep(5 + len(block) * 0)
            os._exit(0)
        end = time.monotonic() + 10
        while not group.oom_killed() and time.monotonic() < end:
            time.sleep(0.05)
        killed = group.oom_killed()
        group.kill()
        os.waitpid(pid, 0)
    finally:
        group.remove()
    assert killed, "three children of 60 MiB each passed a 128 MiB group limit"
    assert not any(p.exists() for p in group.dirs.values())


@pytest.mark.sandbox
def test_watcher_sums_memory_over_a_candidates_children():
    code = (
        "import os, time\n"
        "for _ in range(3):\n"
        "    if os.fork() == 0:\n"
        "        block = b'\\1' * (80 << 20); time.sleep(20); os._exit(0)\n"
        "time.sleep(20)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        watch = Watch(proc.pid, None, None, memory_mb=200, cpu_s=1000)
        end, over = time.monotonic() + 15, None
        while over is None and time.monotonic() < end:
            over = watch.over()
            time.sleep(0.1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        proc.wait()
    assert over == "memory", f"3 x 80 MiB in one session went unnoticed (peak {watch.peak_mb:.0f} MiB)"
    assert 200 < watch.peak_mb < 400, watch.peak_mb  # private pages only, not the shared interpreter


# --------------------------------------------------------------------------- hostile candidates
@ROOT_ONLY
@pytest.mark.parametrize("mode", MODES)
def test_sysv_ipc_dies_with_each_candidate(mode, single, digits, tmp_path):
    token = uuid.uuid4().hex[:8]
    code, header = hostile("os_sysv_shm_persist", TOKEN=token)
    stage, message = expected(header, mode)
    for run in ("first", "second"):
        result = evaluate(single[mode], digits, code, tmp_path / run, candidate_id=f"shm-{run}")
        assert_ends(result, stage, message, f"{run} run ({mode})")
    key = 0x4C4C0000 | (sum(map(ord, token)) & 0xFFFF)
    host = Path("/proc/sysvipc/shm").read_text().split("\n")[1:]
    assert not any(line.split() and int(line.split()[0]) == key for line in host), (
        "the segment reached the host"
    )


@ROOT_ONLY
@pytest.mark.parametrize("mode", MODES)
def test_shared_folders_are_fresh_for_each_candidate(mode, single, digits, tmp_path):
    code, header = hostile("os_tmp_leak_next_candidate", TOKEN=uuid.uuid4().hex[:8])
    stage, message = expected(header, mode)
    for run in ("first", "second"):
        result = evaluate(single[mode], digits, code, tmp_path / run, candidate_id=f"tmp-{run}")
        assert_ends(result, stage, message, f"{run} run ({mode})")


LIST_RUN = """
import math
import os

import torch.nn as nn


def build_model(input_shape, num_classes):
    raise RuntimeError(f"run={sorted(os.listdir('/run'))}")
"""


@ROOT_ONLY
@pytest.mark.parametrize("mode", MODES)
def test_unix_sockets_on_the_host_are_unreachable(mode, single, digits, tmp_path):
    """A socket the candidate can see (a world-writable folder in the pool) and one in the host's /run."""
    pool = single[mode]
    public = pool.root / f"public-{uuid.uuid4().hex[:8]}"
    public.mkdir(mode=0o777)
    public.chmod(0o777)
    path = public / "s.sock"
    host_run = Path("/run") / f"llmnas-test-{uuid.uuid4().hex[:8]}.sock"
    listeners = []
    try:
        for where in (path, host_run):
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(str(where))
            where.chmod(0o777)
            listener.listen(4)
            listener.setblocking(False)
            listeners.append(listener)
        code, header = hostile("os_unix_socket_host", SOCKET=str(path))
        stage, message = expected(header, mode)
        assert_ends(evaluate(pool, digits, code, tmp_path / "sock"), stage, message, mode)
        seen = evaluate(pool, digits, LIST_RUN, tmp_path / "run", candidate_id="list-run")
        assert "run=[]" in seen.message, f"the candidate sees the host's /run: {seen.message}"
        for listener in listeners:
            with pytest.raises(BlockingIOError):
                listener.accept()
    finally:
        for listener in listeners:
            listener.close()
        host_run.unlink(missing_ok=True)
        remove_tree(public)


@ROOT_ONLY
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "name", ["os_fork_memory_across_children", "os_disk_fill_many_files", "os_inode_flood"]
)
def test_limits_hold_for_the_candidate_as_a_whole(name, mode, single, digits, tmp_path):
    code, header = hostile(name)
    stage, message = expected(header, mode)
    assert_ends(
        evaluate(single[mode], digits, code, tmp_path / name, candidate_id=name[:40]), stage, message, mode
    )
    healthy = evaluate(single[mode], digits, GOOD_CNN, tmp_path / "after", candidate_id="healthy")
    assert healthy.ok, f"the slot after {name}: {healthy.stage}: {healthy.message}"


SPIN_CHILDREN = """
import math
import os
import time

import torch.nn as nn


def build_model(input_shape, num_classes):
    kids = []
    for _ in range(4):
        pid = os.fork()
        if pid == 0:
            end = time.process_time() + 2.5  # each under its own RLIMIT_CPU of 3 s
            while time.process_time() < end:
                pass
            os._exit(0)
        kids.append(pid)
    for pid in kids:
        os.waitpid(pid, 0)
    raise RuntimeError("10 CPU seconds in four children")
"""


@pytest.mark.sandbox
@ROOT_ONLY
def test_cpu_seconds_count_over_all_children(digits, tmp_path):
    limits = Limits(timeout_s=60, memory_mb=1024, cpu_s=3, audit_hook=False)
    with LocalPool(1, limits) as one:
        write_worker_data(one.data_dir, digits)
        result = evaluate(one, digits, SPIN_CHILDREN, tmp_path / "spin")
    assert_ends(result, "timeout", "CPU time limit exceeded", "four spinning children")


@pytest.mark.sandbox
@ROOT_ONLY
@pytest.mark.parametrize("mode", ["zygote", "fresh"])
def test_a_deep_tree_cannot_crash_cleanup(mode, digits, tmp_path):
    """In zygote mode the tree lives in the candidate's tmpfs; in fresh mode it lands in the host
    folder, and removing it must neither crash the driver nor leave the pool folder behind."""
    code, header = hostile("os_deep_tree")
    stage, message = expected(header, "os")
    pool = LocalPool(1, OS_LIMITS.model_copy(update={"timeout_s": 60}), mode=mode)  # fresh: imports torch
    try:
        write_worker_data(pool.data_dir, digits)
        assert_ends(evaluate(pool, digits, code, tmp_path / "deep"), stage, message, mode)
        assert sorted(p.name for p in (tmp_path / "deep").iterdir()) <= ["result.json", "stdout.txt"]
        leftovers = [p.name for p in pool.root.iterdir() if p.name.startswith("work-")]
        assert leftovers == [], f"candidate folders left in the pool: {leftovers}"
    finally:
        pool.close()
    assert not pool.root.exists(), "the pool folder outlived the pool"


def test_sweep_removes_only_stale_empty_groups():
    """What a zygote killed mid-candidate leaves: an empty group, removed once it is old enough."""
    prefix = f"llmnas-sweep-{uuid.uuid4().hex[:6]}-"
    stale = cgroup.create(prefix + "old", 64, 4, 1.0)
    if stale is None:
        pytest.skip("no cgroup here (no delegated v2 group, no writable v1 memory group): nothing to sweep")
    fresh = cgroup.create(prefix + "new", 64, 4, 1.0)
    try:
        for path in stale.dirs.values():
            os.utime(path, (time.time() - 3600, time.time() - 3600))
        assert cgroup.sweep(prefix) == len(set(stale.dirs.values()))
        assert not any(p.exists() for p in stale.dirs.values())
        assert all(p.exists() for p in fresh.dirs.values())
    finally:
        stale.remove()
        fresh.remove()


SLEEPER = """
import time


def build_model(input_shape, num_classes):
    time.sleep(120)
"""

DRIVER = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from conftest import SANDBOX_LIMITS, load_dataset, make_job, write_worker_data
from llmnas.execute.local import LocalPool
data = load_dataset("digits", seed=0, max_samples=300)
pool = LocalPool(1, SANDBOX_LIMITS.model_copy(update={"timeout_s": 120, "cpu_s": 200}))
write_worker_data(pool.data_dir, data)
pool.submit(make_job(pool, data, sys.argv[2]), Path(sys.argv[3]))
print(pool.root, flush=True)
time.sleep(300)
"""


@pytest.mark.sandbox
def test_a_killed_drivers_pool_is_swept_by_the_next_pool(tmp_path):
    """kill -9 of the driver mid-candidate: the next pool to start removes the folder (job file, data)
    and kills what still runs in it; a live pool's folder is never touched."""
    live = LocalPool(1, SANDBOX_LIMITS)
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(Path(__file__).parent), SLEEPER, str(tmp_path / "out")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        root = Path(driver.stdout.readline().strip())
        wait_until(lambda: working_in(root, "work-"), "the candidate to start in the driver's pool")
        driver.kill()
        driver.wait()
        assert root.is_dir() and (root / "data").is_dir(), "nothing was left to sweep"
        with LocalPool(1, SANDBOX_LIMITS) as after:
            assert after.root.is_dir()
        assert not root.exists(), "the dead driver's pool folder outlived the next pool's start"
        assert live.root.is_dir() and (live.root / "owner.lock").is_file(), "a live pool was swept"
        wait_until(lambda: not working_in(root), "the processes of the dead pool to end", 10, every_s=0.2)
    finally:
        with contextlib.suppress(ProcessLookupError):
            driver.kill()
        driver.wait()
        live.close()
    assert not live.root.exists()
