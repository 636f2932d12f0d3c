"""Runs on one host never touch each other (issue 31, point 1).

For ``--minutes``, in parallel, each restarted when it ends until time is up: two offline searches, a loop
of ``llmnas eval`` over good and hostile files, a dashboard polled over HTTP, the Ray executor tests, and
searches whose driver is killed with SIGKILL mid-candidate, then resumed. Every command starts in its own
process group, as a shell's job control starts it. Meanwhile every pool folder (/tmp/llmnas-sandbox-*) is
watched, with the pid its owner.lock names.

    .venv/bin/python bench/stress.py [--minutes 10] [--out FOLDER]

Ends with a table of outcomes per kind of process, and exit 1 when anything was unexpected: a signal
death other than our SIGKILL, an eval verdict other than its file's, a search or resume that did not exit
0, a proposal without an evaluation, a pool folder swept while its owner lived, a killed driver's folder
not swept by the next pool that started.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LLMNAS = str(Path(sys.executable).with_name("llmnas"))
HOSTILE = ROOT / "tests" / "hostile"
TMP = Path(tempfile.gettempdir())
POOL_PREFIX = "llmnas-sandbox-"
SEARCH = ["classify digits; under 20k parameters", "--data", "digits", "--max-samples", "400"]
SEARCH += ["--steps", "150", "--budget", "6", "--workers", "1"]
# --timeout 20 instead of the default 120 s, so that the loops among the hostile files take 20 s each
EVAL = ["--data", "digits", "--max-samples", "300", "--steps", "100", "--timeout", "20"]
RAY_TESTS = [
    sys.executable,
    "-m",
    "pytest",
    "-q",
    "-p",
    "no:randomly",
    "tests/test_executors.py",
    "-k",
    "ray",
]
SWEPT = re.compile(r"removed the sandbox folder (\S+) left by a driver that died")
VERDICT = re.compile(r"^(?:ok  |rejected at stage (\w+):)", re.M)
URL = re.compile(r"http://127\.0\.0\.1:\d+/")
UNSHARE = "sigprocmask unblock failed"
POLL_S = 3.0  # between dashboard requests
SCAN_S = 0.1  # between scans of the temp folder
GRACE_S = 300.0  # how long a run in flight at the deadline may take to end
SWEEP_WAIT_S = 120.0  # how long a killed driver's folders may wait for the next pool
SLACK_S = 0.5  # scans are this far apart at most, on a busy machine


@dataclass(frozen=True)
class EvalCase:
    """A model file for `llmnas eval`, the imports it is allowed, and the stage it must end at."""

    path: Path
    imports: tuple[str, ...] = ()
    expect: str | None = None  # None: the file's header (expect-hook, else expect; no header: ok)

    def expected(self) -> str:
        header = {}
        for line in self.path.read_text().splitlines():
            if not line.startswith("#"):
                break
            key, _, value = line[1:].partition(":")
            header[key.strip()] = value.strip()
        return self.expect or header.get("expect-hook", header.get("expect", "ok"))

    def command(self) -> list[str]:
        allowed = [arg for module in self.imports for arg in ("--allow-import", module)]
        return [LLMNAS, "eval", str(self.path), *EVAL, *allowed]


EVAL_CASES = [
    EvalCase(ROOT / "bench" / "models" / "digits_small_cnn.py"),
    EvalCase(HOSTILE / "memorise_labels_in_attribute.py"),
    EvalCase(HOSTILE / "memory_bomb_list_grows.py"),
    EvalCase(HOSTILE / "memory_bomb_torch_empty.py"),
    EvalCase(HOSTILE / "huge_linear.py"),
    EvalCase(HOSTILE / "loop_in_forward.py"),
    EvalCase(HOSTILE / "os_sleep_past_deadline.py", ("time",)),
    EvalCase(HOSTILE / "os_ctypes_wild_read.py", ("ctypes",)),
    EvalCase(HOSTILE / "deep_recursion.py"),
    EvalCase(HOSTILE / "escape_forwardref_fork_bomb.py"),
    EvalCase(HOSTILE / "escape_forwardref_forged_result.py"),
    # `static: skip` files: their header is the sandbox's verdict with the static checks skipped; `eval`
    # runs the checks first, and these fail them even with their imports allowed.
    EvalCase(HOSTILE / "os_fork_bomb.py", expect="static"),
    EvalCase(HOSTILE / "os_kill_everything.py", expect="static"),
]


@dataclass
class Run:
    """One process the stress test started, and what was wrong with how it ended."""

    kind: str
    label: str
    log: Path
    started: float  # seconds since the stress test began
    pid: int = 0
    ended: float | None = None
    code: int | None = None  # as a shell reports it: 128 + N for a death by signal N
    problems: list[str] = field(default_factory=list)


@dataclass
class Pool:
    """A pool folder seen in the temp folder, the process its owner.lock names, and when it went."""

    path: Path
    first_seen: float
    owner: int | None = None
    owner_start: str | None = None  # the owner's start time, so that a reused pid is not taken for it
    gone_at: float | None = None
    owner_alive_when_gone: bool | None = None
    before: bool = False  # there when the stress test began


@dataclass
class Kill:
    """A driver we killed with SIGKILL mid-candidate: its pool folders and the candidates it left pending."""

    run: Run
    pools: list[Pool]
    at: float
    pending: frozenset[str]


def shell_code(returncode: int) -> int:
    """A Popen return code as a shell shows it (-9 becomes 137)."""
    return returncode if returncode >= 0 else 128 - returncode


def start_time(pid: int) -> str | None:
    """A process's start time (field 22 of /proc/PID/stat), or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


def read_events(path: Path) -> list[dict]:
    """The events of a run log; a line still being written is skipped."""
    events = []
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
    return events


def unevaluated(events: list[dict]) -> set[str]:
    """Candidate ids proposed for the sandbox (no stage decided before it) without an evaluation."""
    proposed = {
        e.get("candidate_id") for e in events if e.get("type") == "proposal" and e.get("stage") is None
    }
    return proposed - {e.get("candidate_id") for e in events if e.get("type") == "evaluation"} - {None}


def lost_results(run: Path, allowed: frozenset[str] = frozenset()) -> list[str]:
    """A problem per candidate the run proposed and never evaluated, but those in ``allowed``."""
    missing = unevaluated(read_events(run / "events.jsonl")) - allowed
    return [f"no evaluation for proposed candidate {cid} in {run}" for cid in sorted(missing)]


def verdict(log: Path) -> str | None:
    """The stage an eval printed ("ok" for a pass), from its log."""
    found = VERDICT.findall(log.read_text(errors="replace"))
    return (found[-1] or "ok") if found else None


def tail(log: Path, lines: int = 15) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    """``cmd`` in its own process group (as a shell's job control starts it), its output into ``log``."""
    with open(log, "w") as f:
        f.write(f"$ {shlex.join(cmd)}\n")
        f.flush()
        return subprocess.Popen(
            cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT, process_group=0
        )


class PoolWatch(threading.Thread):
    """Scans the temp folder for pool folders every ``SCAN_S``: when each appeared, whose it was, when it
    went and whether its owner still lived then."""

    def __init__(self, t0: float):
        super().__init__(daemon=True)
        self.t0 = t0
        self.pools: dict[Path, Pool] = {}
        self.scans = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.scan()
            self.stopping.wait(SCAN_S)

    def scan(self) -> None:
        now = time.monotonic() - self.t0
        present = set(TMP.glob(POOL_PREFIX + "*"))
        with self.lock:
            for path in present - self.pools.keys():
                self.pools[path] = Pool(path, now, before=self.scans == 0)
            self.scans += 1
            for pool in self.pools.values():
                if pool.gone_at is not None:
                    continue
                if pool.path not in present:
                    pool.gone_at = now
                    pool.owner_alive_when_gone = (  # an owner already dead when first read never lived
                        pool.owner_start is not None and start_time(pool.owner) == pool.owner_start
                    )
                elif pool.owner is None:
                    self._read_owner(pool)

    @staticmethod
    def _read_owner(pool: Pool) -> None:
        """The pid in the folder's owner.lock (empty until the pool has locked it), with its start time."""
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            pool.owner = int(json.loads((pool.path / "owner.lock").read_text())["pid"])
            pool.owner_start = start_time(pool.owner)

    def owned_by(self, pid: int, wait_s: float = 5.0) -> list[Pool]:
        """The folders of process ``pid`` (waiting up to ``wait_s`` for the first to be seen)."""
        end = time.monotonic() + wait_s
        while True:
            with self.lock:
                found = [p for p in self.pools.values() if p.owner == pid and p.gone_at is None]
            if found or time.monotonic() > end:
                return found
            time.sleep(SCAN_S)

    def wait_gone(self, pools: list[Pool], wait_s: float) -> None:
        end = time.monotonic() + wait_s
        while any(p.gone_at is None for p in pools) and time.monotonic() < end:
            time.sleep(SCAN_S)

    def first_after(self, moment: float) -> Pool | None:
        """The first folder that appeared after ``moment`` (seconds since the start)."""
        with self.lock:
            later = [p for p in self.pools.values() if p.first_seen > moment]
        return min(later, key=lambda p: p.first_seen, default=None)


class Stress:
    """The processes of one stress test, the loops that restart them, and what they left."""

    def __init__(self, out: Path, minutes: float):
        self.out = out
        self.t0 = time.monotonic()
        self.deadline = self.t0 + minutes * 60
        self.runs: list[Run] = []
        self.kills: list[Kill] = []
        self.lock = threading.Lock()
        self.numbers = itertools.count(1)
        self.watch = PoolWatch(self.t0)
        self.done = threading.Event()  # every loop but the dashboard's has ended
        self.requests: Counter[int | str] = Counter()  # the dashboard's answers, by status

    def now(self) -> float:
        return time.monotonic() - self.t0

    def running(self) -> bool:
        return time.monotonic() < self.deadline

    def launch(self, kind: str, cmd: list[str], label: str) -> tuple[Run, subprocess.Popen]:
        log = self.out / "logs" / f"{next(self.numbers):04d}-{label}.log"
        run = Run(kind, label, log, self.now())
        proc = start(cmd, log)
        run.pid = proc.pid
        with self.lock:
            self.runs.append(run)
        return run, proc

    def finish(self, run: Run, proc: subprocess.Popen, codes: tuple[int, ...] = (0,)) -> None:
        """Wait for ``proc`` (killed, by its pid, once ``GRACE_S`` past the deadline) and judge its exit."""
        try:
            returncode = proc.wait(timeout=max(1.0, self.deadline + GRACE_S - time.monotonic()))
        except subprocess.TimeoutExpired:
            run.problems.append(f"still running {GRACE_S:.0f} s after the end: killed")
            proc.kill()
            returncode = proc.wait()
        run.ended, run.code = self.now(), shell_code(returncode)
        if run.code not in codes:
            run.problems.append(f"exit {run.code}, expected {' or '.join(map(str, codes))}")

    def execute(self, kind: str, cmd: list[str], label: str, codes: tuple[int, ...] = (0,)) -> Run:
        run, proc = self.launch(kind, cmd, label)
        self.finish(run, proc, codes)
        return run

    # ------------------------------------------------------------------ the loops
    def search_loop(self, tag: str, seeds: itertools.count) -> None:
        """Offline searches one after another, a new seed each."""
        while self.running():
            seed = next(seeds)
            folder = self.out / f"search{tag}-{seed}"
            cmd = [LLMNAS, "search", *SEARCH, "--seed", str(seed), "--out", str(folder)]
            run = self.execute("search", cmd, folder.name)
            run.problems += lost_results(folder)

    def eval_loop(self) -> None:
        """`llmnas eval` over ``EVAL_CASES`` round and round: exit 0 and ok, or exit 1 at the file's stage."""
        cases = itertools.cycle(EVAL_CASES)
        while self.running():
            case = next(cases)
            want = case.expected()
            run = self.execute(
                "eval", case.command(), f"eval-{case.path.stem}", (0,) if want == "ok" else (1,)
            )
            got = verdict(run.log)
            if got != want:
                run.problems.append(f"verdict {got}, expected {want}")

    def ray_loop(self) -> None:
        while self.running():
            self.execute("ray-tests", RAY_TESTS, "ray-tests")

    def kill_loop(self, seeds: itertools.count) -> None:
        while self.running():
            self.kill_and_resume(next(seeds))

    def kill_and_resume(self, seed: int) -> None:
        """A search whose driver gets SIGKILL (its pid alone) while a candidate is in the sandbox; once the
        next pool has swept its folder, `llmnas resume` must finish it with nothing lost."""
        folder = self.out / f"killed-{seed}"
        cmd = [LLMNAS, "search", *SEARCH, "--seed", str(seed), "--out", str(folder)]
        run, proc = self.launch("killed-driver", cmd, folder.name)
        pending = wait_mid_candidate(folder / "events.jsonl", proc)
        if not pending:
            self.finish(run, proc)
            run.problems.append("ended, or never had a candidate in the sandbox, before it could be killed")
            return
        pools = self.watch.owned_by(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        self.kills.append(Kill(run, pools, self.now(), pending))
        self.finish(run, proc, (128 + signal.SIGKILL,))
        if not pools:
            run.problems.append("no pool folder of its own was seen")
        self.watch.wait_gone(pools, SWEEP_WAIT_S)
        resumed = self.execute("resume", [LLMNAS, "resume", str(folder)], f"resume-{seed}")
        resumed.problems += lost_results(folder, pending)

    def dashboard_loop(self) -> None:
        """`llmnas dashboard OUT --port 0` until every other loop has ended, polled every ``POLL_S``; then
        SIGINT. One that ends by itself is a problem, and is started again."""
        while not self.done.is_set():
            run, proc = self.launch(
                "dashboard", [LLMNAS, "dashboard", str(self.out), "--port", "0"], "dashboard"
            )
            url = wait_for_url(run.log, proc)
            if url is None:
                run.problems.append("printed no URL")
            polls: Counter[int | str] = Counter()
            pages = itertools.cycle(["", "state"])
            while url and not self.done.wait(POLL_S) and proc.poll() is None:
                polls[http_status(url + next(pages))] += 1
            if proc.poll() is not None:
                run.problems.append("ended before it was sent SIGINT")
            proc.send_signal(signal.SIGINT)
            self.finish(run, proc, (0, 130))
            run.problems += [
                f"{n} requests answered {status}" for status, n in polls.items() if status != 200
            ]
            self.requests += polls

    def run(self) -> None:
        """Every loop in its own thread until the deadline, then the dashboard's stop."""
        self.watch.start()
        loops = [
            (self.search_loop, ("A", itertools.count(100))),
            (self.search_loop, ("B", itertools.count(200))),
            (self.eval_loop, ()),
            (self.ray_loop, ()),
            (self.kill_loop, (itertools.count(300),)),
        ]
        threads = [threading.Thread(target=fn, args=args) for fn, args in loops]
        dashboard = threading.Thread(target=self.dashboard_loop)
        for thread in [dashboard, *threads]:
            thread.start()
        for thread in threads:
            thread.join()
        self.done.set()
        dashboard.join()
        self.watch.stopping.set()
        self.watch.join()
        self.watch.scan()

    # ------------------------------------------------------------------ what they left
    def check_sweeps(self) -> list[str]:
        """Problems with the folders our processes swept: a live owner, or an owner never seen."""
        problems = []
        for run in self.runs:
            for path in SWEPT.findall(run.log.read_text(errors="replace")):
                pool = self.watch.pools.get(Path(path))
                if pool is None or pool.owner is None:
                    if pool is None or not pool.before:
                        problems.append(f"{run.log.name} swept {path}, whose owner.lock named nobody yet")
                elif pool.owner_alive_when_gone:
                    problems.append(f"{run.log.name} swept {path} while its owner {pool.owner} lived")
        return problems

    def check_kills(self) -> list[str]:
        """Problems with the killed drivers' folders: not swept by the next pool that started."""
        problems = []
        for kill in self.kills:
            following = self.watch.first_after(kill.at + SLACK_S)
            for pool in kill.pools:
                if pool.gone_at is None:
                    problems.append(f"{pool.path} of killed {kill.run.label} was never swept")
                elif following is not None and pool.gone_at > following.first_seen + SLACK_S:
                    problems.append(
                        f"{pool.path} of killed {kill.run.label} went at {pool.gone_at:.1f} s, "
                        f"after the next pool appeared ({following.first_seen:.1f} s)"
                    )
        return problems

    def owner_run(self, pool: Pool) -> Run | None:
        """The run of ours that made ``pool``: the pid its lock names, alive when it appeared."""
        for run in self.runs:
            lived = run.started - SLACK_S <= pool.first_seen <= (run.ended or self.now()) + SLACK_S
            if run.pid == pool.owner and lived:
                return run
        return None

    def check_leftovers(self) -> list[str]:
        """Problems with the folders of our drivers that were not killed: one that outlived its owner."""
        problems = []
        for pool in self.watch.pools.values():
            run = self.owner_run(pool)
            if run is None or run.kind == "killed-driver" or run.ended is None:
                continue
            if pool.gone_at is None or pool.gone_at > run.ended + SLACK_S:
                problems.append(f"{pool.path} outlived its owner {run.label} (log {run.log})")
        return problems

    def kill_lines(self) -> list[str]:
        """Per killed driver: when, and when and by whom each of its folders was swept."""
        sweepers = {
            Path(path): run.log.name
            for run in self.runs
            for path in SWEPT.findall(run.log.read_text(errors="replace"))
        }
        lines = []
        for kill in self.kills:
            lines.append(
                f"killed {kill.run.label} (pid {kill.run.pid}) at {kill.at:.1f} s, pending {sorted(kill.pending)}"
            )
            lines += [
                f"  its {pool.path} went at {pool.gone_at:.1f} s, swept by {sweepers.get(pool.path, 'none of ours')}"
                if pool.gone_at is not None
                else f"  its {pool.path} is still there"
                for pool in kill.pools
            ]
        return lines

    def unshare_lines(self) -> list[str]:
        found = []
        for run in self.runs:
            text = run.log.read_text(errors="replace")
            found += [f"{run.log}: {line}" for line in text.splitlines() if UNSHARE in line]
        return found


def wait_mid_candidate(events: Path, proc: subprocess.Popen, wait_s: float = 300.0) -> frozenset[str]:
    """Once a proposal after the first round waits for its evaluation: the ids pending (none when the
    process ended first, or after ``wait_s``)."""
    end = time.monotonic() + wait_s
    while proc.poll() is None and time.monotonic() < end:
        logged = read_events(events)
        pending = unevaluated(logged)
        rounds = [
            e["round"] for e in logged if e.get("type") == "proposal" and e.get("candidate_id") in pending
        ]
        if max(rounds, default=0) >= 1:
            return frozenset(pending)
        time.sleep(0.02)
    return frozenset()


def wait_for_url(log: Path, proc: subprocess.Popen, wait_s: float = 60.0) -> str | None:
    end = time.monotonic() + wait_s
    while proc.poll() is None and time.monotonic() < end:
        found = URL.search(log.read_text(errors="replace"))
        if found:
            return found.group(0)
        time.sleep(0.2)
    return None


def http_status(url: str) -> int | str:
    """The HTTP status of a GET, or the error that stopped it."""
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            reply.read()
            return reply.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError as exc:
        return type(exc).__name__


def outcome_table(runs: list[Run]) -> str:
    """Per kind of process: runs, exit statuses with their counts, how many were unexpected."""
    rows = [("kind", "runs", "exit statuses (status x count)", "unexpected")]
    for kind in dict.fromkeys(r.kind for r in runs):
        mine = [r for r in runs if r.kind == kind]
        codes = Counter("running" if r.code is None else str(r.code) for r in mine)
        exits = ", ".join(f"{code} x{n}" for code, n in sorted(codes.items()))
        rows.append((kind, str(len(mine)), exits, str(sum(bool(r.problems) for r in mine))))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)


def report(stress: Stress) -> tuple[str, bool]:
    """The summary to print, and whether anything was unexpected."""
    pools = list(stress.watch.pools.values())
    swept = [path for r in stress.runs for path in SWEPT.findall(r.log.read_text(errors="replace"))]
    others = stress.check_sweeps() + stress.check_kills() + stress.check_leftovers()
    lines = [
        outcome_table(stress.runs),
        "",
        f"pool folders seen: {len(pools)} ({sum(stress.owner_run(p) is not None for p in pools)} of our drivers); "
        f"swept by our processes: {len(swept)}; killed drivers: {len(stress.kills)}, "
        f"with {sum(len(k.pools) for k in stress.kills)} folders; still there at the end: "
        f"{sum(p.gone_at is None for p in pools)}",
        "dashboard requests by status: " + ", ".join(f"{s} x{n}" for s, n in stress.requests.items()),
        *stress.kill_lines(),
    ]
    unexpected = [r for r in stress.runs if r.problems]
    for run in unexpected:
        lines += [
            "",
            f"UNEXPECTED {run.kind} {run.label} (pid {run.pid}, {run.started:.0f}-{run.ended:.0f} s): ",
        ]
        lines += [f"  {problem}" for problem in run.problems]
        lines += [f"  log {run.log}, last lines:", "    " + tail(run.log).replace("\n", "\n    ")]
    lines += [f"UNEXPECTED {problem}" for problem in others]
    lines += [f"unshare line: {line}" for line in stress.unshare_lines()]
    return "\n".join(lines), bool(unexpected or others)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to keep starting processes")
    parser.add_argument("--out", type=Path, help="run folders and logs (default: a new temp folder)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="llmnas-stress-"))
    (out / "logs").mkdir(parents=True, exist_ok=True)
    print(f"stress test for {args.minutes:g} min; logs in {out / 'logs'}", flush=True)
    stress = Stress(out, args.minutes)
    stress.run()
    text, bad = report(stress)
    print(text)
    (out / "summary.txt").write_text(text + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
