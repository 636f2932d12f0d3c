"""Which containment layers are in force on this host, and why not where one is missing.

``active_layers()`` probes the host the way the pool uses it (unshare, mount, cgroup, seccomp) and
answers {layer: "on: ..." | "fallback: ..." | "off: ..."}. Cheap (a few short subprocesses and one
fork, cached) and free of llmnas imports, so the driver can call it for `llmnas doctor` and its events.
It reports what the host allows, not what a given pool was started with (Limits.audit_hook, fresh mode).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from functools import cache

from sandbox import cgroup, seccomp

NAMESPACES = {
    "netns": (["--net"], "no network: sockets reach nothing, not even the host's loopback"),
    "pidns": (["--pid", "--fork", "--mount-proc"], "candidates see and signal only their own processes"),
    "mountns": (["--mount"], "private mount view: the zygote's own /tmp, /var/tmp, /dev/shm and /run"),
    "ipcns": (["--ipc"], "SysV IPC and POSIX queues die with each candidate"),
    "utsns": (["--uts"], "hostname changes stay inside"),
}


def _unshare(args: list[str], command: list[str]) -> str | None:
    """The unshare prefix (plain, or with --map-root-user) under which ``command`` succeeds, if any."""
    tool = shutil.which("unshare")
    if tool is None:
        return None
    for extra in ([], ["--map-root-user"]):
        try:
            done = subprocess.run([tool, *extra, *args, *command], capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            return "as root" if not extra else "in a user namespace"
    return None


@cache
def active_layers() -> dict[str, str]:
    layers = {}
    for name, (args, what) in NAMESPACES.items():
        how = _unshare(args, ["true"])
        layers[name] = f"on ({how}): {what}" if how else "off: unshare is missing or not permitted here"
    tmpfs = _unshare(["--mount"], ["mount", "-t", "tmpfs", "llmnas-probe", "/tmp"])
    layers["tmpfs"] = (
        "on: each candidate works in a size- and inode-limited tmpfs with fresh /tmp, /var/tmp, /dev/shm"
        " and /run; only result files are copied out"
        if tmpfs
        else "off: cannot mount tmpfs in a mount namespace: candidates write to host folders (RLIMIT_FSIZE)"
    )
    why = seccomp.probe()
    layers["seccomp"] = (
        "on: no unix/netlink/vsock/... sockets, no namespaces, mounts, ptrace, bpf, keyrings, io_uring"
        if why is None
        else f"off: {why}"
    )
    group = cgroup.create(f"llmnas-probe-{uuid.uuid4().hex[:8]}", 64, 16, 1.0)
    if group is not None:
        layers["cgroup"] = f"on (v{group.version}: {', '.join(group.controllers)}): limits per candidate"
        group.remove()
    else:
        layers["cgroup"] = (
            "fallback: no delegated cgroup v2 and no writable v1 memory group: the zygote sums the"
            " candidate's processes from /proc and kills them all over the limit"
        )
    layers["uid_drop"] = (
        "on: each slot's candidates run as an unprivileged uid of their own"
        if os.geteuid() == 0
        else "off: the driver is not root: candidates run as its user (rlimits and namespaces still hold)"
    )
    layers["audit_hook"] = (
        "on unless Limits(audit_hook=False): a speed bump, not a wall (native code skips it)"
    )
    return layers


if __name__ == "__main__":
    import json
    import sys

    if "--json" in sys.argv:
        print(json.dumps(active_layers()))
    else:
        for key, value in active_layers().items():
            print(f"{key:11} {value}")
