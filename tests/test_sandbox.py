"""The sandbox against a corpus of hostile and broken candidates (tests/hostile/*.py).

Every corpus file starts with comment lines that say how it must end:

    # expect: STAGE        the stage it ends in (static, build, shape, budget, train, timeout, memory,
                           crash), or `ok` for a candidate that may finish but must not profit
    # message: TEXT        a substring of the failure message; `A || B` accepts either, where the
                           outcome depends on the machine (said in the file)
    # expect-hook: STAGE   the same two, for one mode only (see below); they override expect/message
    # message-hook: TEXT
    # expect-os: STAGE
    # message-os: TEXT
    # static: skip         run it through the sandbox without the static checks, to test what is
                           left: the audit hook, the rlimits, the uid, the namespaces
    # modes: hook os       which pools run it (default: both for `static: skip`, else `hook`)
    # payload: NAME        for an `escape_*` candidate the static checks refuse: the `static: skip`
                           candidate that runs its payload
    # score: chance        an `ok` candidate whose driver-side accuracy must stay at chance level

Two pools run the corpus side by side: `hook` (the default limits, the audit hook on, as in a search)
and `os` (``Limits(audit_hook=False)``: only the OS layers). A `static: skip` candidate runs in both,
so each attack shows what the hook says about it and that the operating system alone stops it too.
Every other candidate goes through ``validate.check`` first, as in a search: `static` ones must be
rejected there, the rest must get past it. A result that comes back ok is judged on the driver side
exactly as a search does (``llmnas.engine.evaluation.judge``: predictions scored here, parameters counted from the
weights file, hard limits applied). ``{{PORT}} {{HOME}} {{DATA_DIR}} {{SECRET_FILE}}
{{TMP_SECRET_FILE}} {{TOKEN}} {{REPO}}`` are filled in here, per pool.

The whole corpus is submitted at once to both two-worker pools (timeouts first, so that they overlap),
and the per-candidate tests read the outcomes. Around it: a listening socket that nothing may reach, a
snapshot of the places a candidate could write to, and a scan for surviving processes.
"""

from __future__ import annotations

import ast
import contextlib
import math
import os
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from conftest import GOOD_CNN, OS_LIMITS, SANDBOX_LIMITS, evaluate, logged, make_job, write_worker_data
from fakes.list_proposer import ListProposer

from llmnas.candidate import checks as validate
from llmnas.config import RunConfig
from llmnas.engine.evaluation import judge
from llmnas.engine.loop import Search
from llmnas.engine.scoring import score
from llmnas.execute.local import LocalPool, output_limits
from llmnas.results.export import BestExport
from llmnas.run import make_spec
from llmnas.runs.store import RunStore
from llmnas.task.datasets import Dataset
from llmnas.task.spec import TaskSpec
from sandbox.protocol import DATA_FILES, Result, TrainConfig

pytestmark = pytest.mark.sandbox  # every test here but the corpus's own check runs candidates in pools

CORPUS_DIR = Path(__file__).parent / "hostile"
REPO = Path(__file__).resolve().parent.parent
STAGES = {"static", "build", "shape", "budget", "train", "export", "timeout", "memory", "crash", "ok"}
MODES = ("hook", "os")
HEADER_KEYS = {
    "expect",
    "message",
    *(f"{key}-{mode}" for key in ("expect", "message") for mode in MODES),
    "static",
    "modes",
    "payload",
    "score",
    "counted",
}
CORPUS_MAX_PARAMS = 1_000_000
CORPUS_SPEC = TaskSpec(max_params=CORPUS_MAX_PARAMS)  # the hard limit the driver applies in judge()
CORPUS_CFG = RunConfig(requirements="the hostile corpus", data="digits", limits=SANDBOX_LIMITS)
CHANCE = 0.3  # 10 classes: chance is 0.1; 0.3 is four standard deviations above it on 41 samples
MARKER = "llmnas-hostile"
SECRET_TEXT = "TOPSECRET-driver-only"
SECRETS = {"OPENAI_API_KEY": "sk-test-secret", "HF_TOKEN": "hf_test_secret"}
WATCHED = (Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"), Path.home(), REPO)
NOT_ROOT = "the OS layer drops each candidate to an unprivileged uid only when the driver runs as root"


# --------------------------------------------------------------------------- the corpus
@dataclass(frozen=True)
class Case:
    name: str
    source: str
    header: dict[str, str]

    @property
    def static_skip(self) -> bool:
        return self.header.get("static") == "skip"

    @property
    def chance(self) -> bool:
        return self.header.get("score") == "chance"

    @property
    def counted(self) -> int | None:
        """``# counted: N``: the candidate may score well only with at least N parameters counted (what its
        artifact carries); else it must be at chance."""
        return int(self.header["counted"]) if "counted" in self.header else None

    @property
    def payload(self) -> str | None:
        return self.header.get("payload")

    @property
    def modes(self) -> tuple[str, ...]:
        if "modes" in self.header:
            return tuple(self.header["modes"].split())
        return MODES if self.static_skip else ("hook",)

    def expect(self, mode: str) -> str:
        return self.header.get(f"expect-{mode}", self.header.get("expect", ""))

    def messages(self, mode: str, values: dict[str, str] | None = None) -> tuple[str, ...]:
        text = self.header.get(f"message-{mode}", self.header.get("message"))
        for key, value in (values or {}).items():
            text = text.replace("{{" + key + "}}", value) if text else text
        return tuple(m.strip() for m in text.split("||")) if text else ()

    def code(self, values: dict[str, str]) -> str:
        text = self.source
        for key, value in values.items():
            text = text.replace("{{" + key + "}}", value)
        return text


def load_corpus() -> list[Case]:
    cases = []
    for path in sorted(CORPUS_DIR.glob("*.py")):
        source = path.read_text()
        header: dict[str, str] = {}
        for line in source.splitlines():
            if not line.startswith("#"):
                break
            key, sep, value = line[1:].partition(":")
            if sep and key.strip() in HEADER_KEYS:
                header[key.strip()] = value.strip()
        cases.append(Case(path.stem, source, header))
    return cases


CORPUS = load_corpus()
BY_NAME = {c.name: c for c in CORPUS}
RUNS = [(case, mode) for case in CORPUS for mode in case.modes]


@dataclass
class Outcome:
    case: Case
    mode: str
    code: str
    rejection: validate.Rejection | None = None
    result: Result | None = None
    out_dir: Path | None = None
    verdict: tuple[str, str, dict] | None = None  # (stage or "ok", message, metrics) after judge()


@dataclass
class CorpusRun:
    outcomes: dict[tuple[str, str], Outcome]
    token: str
    values: dict[str, dict[str, str]]  # per mode: what the {{PLACEHOLDERS}} were filled with
    changed: dict[str, tuple] = field(default_factory=dict)
    connections: list[str] = field(default_factory=list)
    survivors: list[str] = field(default_factory=list)


def sandbox_uids(*pools: LocalPool) -> set[int]:
    """The unprivileged uids the pools' candidates run as (empty when the driver is not root)."""
    return {slot.uid for pool in pools for slot in pool._all if slot.uid is not None}


def _snapshot(roots: tuple[Path, ...] = ()) -> dict[str, tuple]:
    """Owner, mtime and size of every top-level entry of the watched folders, of everything under the
    pools' own folders (``roots``) and of the files `git status` lists."""
    entries: dict[str, tuple] = {}

    def note(path: str) -> None:
        with contextlib.suppress(OSError):
            st = os.lstat(path)
            entries[path] = (st.st_uid, st.st_mtime_ns, st.st_size)

    for folder in WATCHED:
        with contextlib.suppress(OSError):
            for entry in os.scandir(folder):
                note(entry.path)
    for root in roots:
        for parent, dirs, files in os.walk(root):
            for name in (*dirs, *files):
                note(os.path.join(parent, name))
    git = shutil.which("git")
    if git:
        status = subprocess.run(
            [git, "status", "--porcelain", "--untracked-files=all"], cwd=REPO, capture_output=True, text=True
        )
        for line in status.stdout.splitlines():
            path = REPO / line[3:].split(" -> ")[-1].strip('"')
            try:
                st = path.lstat()
                entries[f"git:{path}"] = (st.st_uid, st.st_mtime_ns, st.st_size)
            except OSError:
                entries[f"git:{path}"] = (None, None, None)
    return entries


def _processes_of(uids: set[int]) -> list[str]:
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, StopIteration):
            status = Path(entry.path, "status").read_text()
            uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
            if int(uid_line.split()[1]) in uids:
                cmd = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                state = next(line for line in status.splitlines() if line.startswith("State:"))
                found.append(f"pid {entry.name} uid {uid_line.split()[1]} {state.split()[1]}: {cmd[:60]}")
    return found


def _remove_markers(token: str) -> None:
    """Delete whatever a candidate managed to leave behind (named with the corpus's marker)."""
    for folder in WATCHED:
        with contextlib.suppress(OSError):
            for entry in os.scandir(folder):
                if f"{MARKER}-{token}" in entry.name:
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)


def _verdict(outcome: Outcome, digits: Dataset) -> tuple[str, str, dict]:
    """What a search would record: the static rejection, the sandbox's failure, or judge()'s word."""
    if outcome.rejection is not None:
        return "static", outcome.rejection.message, {}
    result = outcome.result
    verdict = judge(result, outcome.out_dir, digits, CORPUS_SPEC, CORPUS_CFG)
    return ("ok" if verdict.ok else str(verdict.stage)), verdict.message, verdict.metrics.model_dump()


@pytest.fixture(scope="module")
def corpus_run(pool: LocalPool, os_pool: LocalPool, digits: Dataset, tmp_path_factory) -> Iterator[CorpusRun]:
    out_root = tmp_path_factory.mktemp("corpus")
    token = uuid.uuid4().hex[:8]
    pools = {"hook": pool, "os": os_pool}
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.setblocking(False)
    # A world-readable file in the host's /tmp (hidden from candidates by their private /tmp), and a
    # mode-600 file in each pool's folder (visible to candidates: only its mode protects it).
    tmp_secret_dir = Path(tempfile.mkdtemp(prefix=f"{MARKER}-secret-"))
    tmp_secret_dir.chmod(0o755)
    tmp_secret = tmp_secret_dir / "public.txt"
    tmp_secret.write_text(SECRET_TEXT + "\n")
    tmp_secret.chmod(0o644)
    private = {mode: p.root / f"{MARKER}-{token}-private.txt" for mode, p in pools.items()}
    for path in private.values():
        path.write_text(SECRET_TEXT + "\n")
        path.chmod(0o600)
    values = {
        mode: {
            "PORT": str(listener.getsockname()[1]),
            "HOME": str(Path.home()),
            "DATA_DIR": str(p.data_dir),
            "SECRET_FILE": str(private[mode]),
            "TMP_SECRET_FILE": str(tmp_secret),
            "TOKEN": token,
            "REPO": str(REPO),
        }
        for mode, p in pools.items()
    }
    roots = tuple(p.root for p in pools.values())
    run = CorpusRun(outcomes={}, token=token, values=values)
    before = _snapshot(roots)
    futures = {}
    try:
        # Timeouts first: they take the longest and overlap best with everything else. Fork bombs go
        # in the middle on purpose: what they leave in their slot must not change later outcomes.
        for case, mode in sorted(RUNS, key=lambda r: r[0].expect(r[1]) != "timeout"):
            if mode == "os" and os.geteuid() != 0:
                continue
            outcome = run.outcomes[case.name, mode] = Outcome(case, mode, case.code(values[mode]))
            code = outcome.code
            if not case.static_skip:
                checked = validate.check(code)
                if isinstance(checked, validate.Rejection):
                    outcome.rejection = checked
                    continue
                code = checked.code
            outcome.out_dir = out_root / mode / case.name
            job = make_job(
                pools[mode], digits, code, candidate_id=case.name[:40], max_params=CORPUS_MAX_PARAMS
            )
            futures[case.name, mode] = pools[mode].submit(job, outcome.out_dir)
        for key, future in futures.items():
            run.outcomes[key].result = future.result()
        after = _snapshot(roots)
        uids = sandbox_uids(*pools.values())
        run.changed = {  # new or changed and marked, or owned by a sandbox uid at all
            path: info
            for path, info in after.items()
            if (before.get(path) != info and MARKER in path) or info[0] in uids
        }
        with contextlib.suppress(BlockingIOError):
            while True:
                conn, addr = listener.accept()
                conn.settimeout(1)
                run.connections.append(f"{addr}: {conn.recv(100)!r}")
                conn.close()
        run.survivors = _processes_of(uids)
        for outcome in run.outcomes.values():
            outcome.verdict = _verdict(outcome, digits)
        yield run
    finally:
        for future in futures.values():
            future.cancel()
        listener.close()
        shutil.rmtree(tmp_secret_dir, ignore_errors=True)
        for path in private.values():
            path.unlink(missing_ok=True)
        _remove_markers(token)


def _describe(outcome: Outcome) -> str:
    if outcome.rejection is not None:
        return f"rejected by the static checks: {outcome.rejection.message}"
    if outcome.result is None or outcome.verdict is None:
        return "never evaluated"
    stage, message, metrics = outcome.verdict
    if stage == "ok":
        return f"ended ok with metrics {metrics}"
    where = "" if outcome.result.ok else " in the sandbox"
    return f"ended{where} in stage {stage}: {message}"


def _message_matches(case: Case, mode: str, message: str, values: dict[str, str] | None = None) -> bool:
    expected = case.messages(mode, values)
    return not expected or any(m in message for m in expected)


def test_corpus_is_well_formed():
    assert len(CORPUS) >= 30
    for case in CORPUS:
        assert case.source.startswith("# expect: "), f"{case.name}: the first line must be `# expect: STAGE`"
        assert set(case.modes) <= set(MODES) and case.modes, f"{case.name}: modes {case.modes}"
        for mode in MODES:
            expect = case.expect(mode)
            assert expect in STAGES, f"{case.name}: unknown stage {expect!r} ({mode})"
            assert expect != "ok" or case.chance, f"{case.name}: an `ok` candidate needs `# score: chance`"
            assert expect == "ok" or case.messages(mode), f"{case.name}: a failure needs a `# message:`"
        assert case.expect("hook") != "static" or not case.static_skip, f"{case.name}: static and skip"
        if case.expect("hook") == "static":
            assert case.modes == ("hook",), f"{case.name}: the static checks are the same in every mode"
        if case.name.startswith("escape_"):
            payload = BY_NAME.get(case.payload or "")
            assert payload is not None and payload.static_skip and "os" in payload.modes, (
                f"{case.name}: `# payload:` must name a `static: skip` candidate run without the hook"
            )
        if case.static_skip and case.name != "os_unhook_globals":
            assert "_REFUSED_EVENTS" not in case.source, (
                f"{case.name}: the `os` pool runs it without the hook; no need to empty the hook's tables"
            )
    assert {c.expect("hook") for c in CORPUS} >= STAGES - {"ok"}, "every failure stage has a candidate"
    # Every `static: skip` candidate runs without the audit hook: the OS layer is what is under test.
    assert all("os" in c.modes for c in CORPUS if c.static_skip)


@pytest.mark.parametrize(("case", "mode"), RUNS, ids=[f"{c.name}@{m}" for c, m in RUNS])
def test_corpus_candidate(case: Case, mode: str, corpus_run: CorpusRun):
    if mode == "os" and os.geteuid() != 0:
        pytest.skip(NOT_ROOT)
    outcome = corpus_run.outcomes[case.name, mode]
    expect = case.expect(mode)
    if expect == "static":
        assert outcome.rejection is not None, (
            f"{case.name} got past the static checks and {_describe(outcome)}"
        )
        assert outcome.rejection.stage == "static"
        assert _message_matches(case, mode, outcome.rejection.message, corpus_run.values[mode]), (
            outcome.rejection.message
        )
        return
    assert outcome.rejection is None, (
        f"{case.name} is meant to reach the sandbox but was {_describe(outcome)}"
    )
    assert outcome.result is not None and outcome.result.candidate_id == case.name[:40]
    stage, message, metrics = outcome.verdict
    if expect == "ok":
        assert stage == "ok", f"{case.name} ({mode}) {_describe(outcome)}"
        honest = metrics["val_acc"] < CHANCE and metrics["test_acc"] < CHANCE
        assert honest or metrics["params"] >= (case.counted or math.inf), (
            f"{case.name} fooled the driver-side score: {metrics}"
        )
        return
    assert stage != "ok", f"BUG: {case.name} ({mode}) should end in stage {expect} but {_describe(outcome)}"
    assert stage == expect, f"{case.name} ({mode}) {_describe(outcome)}"
    assert _message_matches(case, mode, message, corpus_run.values[mode]), (
        f"{case.name} ({mode}) {_describe(outcome)}"
    )


def test_nothing_reached_the_loopback_listener(corpus_run: CorpusRun):
    assert corpus_run.connections == []


def test_no_file_changed_outside_the_candidate_folders(corpus_run: CorpusRun):
    """HOME, /tmp, /var/tmp, /dev/shm, the repo (top level and `git status`) and everything in the
    pools' folders, before and after.

    Other processes (and other engineers' runs) change these folders too, so a change counts when it
    is owned by a sandbox uid or carries the corpus's file-name marker.
    """
    assert corpus_run.changed == {}, "candidates left files behind:\n" + "\n".join(corpus_run.changed)


def test_no_candidate_process_survives(corpus_run: CorpusRun):
    """Fork bombs, double-forked setsid daemons and their `sleep` children are all gone (zombies too)."""
    left = corpus_run.survivors
    assert left == [], f"{len(left)} processes of the sandbox uids are left after the corpus: {left[:3]}"


FORK_ONCE = """
import math
import os

import torch.nn as nn


def build_model(input_shape, num_classes):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason=NOT_ROOT)
def test_a_fork_bomb_leaves_nothing_to_the_next_candidate(digits: Dataset, tmp_path):
    """Without the hook: RLIMIT_NPROC stops the bomb, and its children are killed and reaped before the
    slot takes the next candidate (same uid, same RLIMIT_NPROC)."""
    bomb = BY_NAME["os_fork_bomb"]
    with LocalPool(1, OS_LIMITS) as one:
        write_worker_data(one.data_dir, digits)
        first = evaluate(one, digits, bomb.source, tmp_path / "bomb", candidate_id="bomb")
        assert first.stage.value == "build" and "BlockingIOError" in first.message, first
        left = _processes_of(sandbox_uids(one))
        second = evaluate(one, digits, FORK_ONCE, tmp_path / "next", candidate_id="next")
    problems = []
    if left:
        problems.append(f"{len(left)} processes of the slot's uid outlived the bomb, e.g. {left[:2]}")
    if not second.ok:
        problems.append(f"the slot's next candidate could not fork: {second.stage.value}: {second.message}")
    assert not problems, "; ".join(problems)


def test_data_folder_holds_exactly_the_four_files(
    corpus_run: CorpusRun, pool: LocalPool, os_pool: LocalPool, digits: Dataset
):
    for p in (pool, os_pool):
        assert sorted(f.name for f in p.data_dir.iterdir()) == sorted(DATA_FILES)
        labels = np.load(p.data_dir / "train_y.npy", allow_pickle=False)
        np.testing.assert_array_equal(labels, digits.y_train)  # nobody poisoned the shared labels


def test_no_private_data_in_any_candidate_output(corpus_run: CorpusRun):
    """Nothing of /etc/shadow, the driver's private files or its environment reaches a run folder."""
    shadow_line = re.compile(r"^root:[^:]*:\d*:", re.MULTILINE)
    leaks = (SECRET_TEXT, *SECRETS.values())
    for outcome in corpus_run.outcomes.values():
        texts = [outcome.result.message] if outcome.result else []
        if outcome.out_dir and outcome.out_dir.exists():
            texts += [
                p.read_bytes().decode(errors="replace") for p in outcome.out_dir.iterdir() if p.is_file()
            ]
        for text in texts:
            assert not any(s in text for s in leaks), (
                f"{outcome.case.name} ({outcome.mode}) leaked private data"
            )
            assert not shadow_line.search(text), f"{outcome.case.name} ({outcome.mode}) leaked /etc/shadow"


def test_output_folders_hold_only_what_the_driver_takes(corpus_run: CorpusRun):
    """The files the driver copies back (``output_limits``), each within its size, and nothing else."""
    limits = output_limits(SANDBOX_LIMITS)
    for outcome in corpus_run.outcomes.values():
        if outcome.out_dir is not None:
            for path in outcome.out_dir.iterdir():
                where = f"{outcome.case.name} ({outcome.mode}): {path.name}"
                assert path.name in limits, f"{where} is not an output the driver takes"
                assert path.is_file() and not path.is_symlink(), f"{where} is not a regular file"
                assert path.stat().st_size <= limits[path.name], f"{where} is over its size limit"


def test_pools_are_healthy_after_the_corpus(
    corpus_run: CorpusRun, pool: LocalPool, os_pool: LocalPool, digits: Dataset, tmp_path
):
    """A known-good CNN, once in each slot of each pool, after everything the corpus did to them."""
    train = TrainConfig(max_steps=150, eval_every=50)
    futures = {
        (name, i): p.submit(
            make_job(p, digits, GOOD_CNN, candidate_id=f"healthy-{i}", train=train), tmp_path / name / str(i)
        )
        for name, p in (("hook", pool), ("os", os_pool))
        for i in range(2)  # two at once: each slot takes one
    }
    # every number the artifact stores: two convolutions (the exporter folds each BatchNorm into its
    # convolution in eval mode) and the head
    stored = 16 * 9 + 16 + 32 * 16 * 9 + 32 + 32 * 10 + 10
    for (name, i), future in futures.items():
        result = future.result()
        assert result.ok, f"{name} pool: {result.stage}: {result.message}"
        m = result.metrics
        assert m.params == stored
        assert m.flops > 0 and 0 < m.latency_ms < 100 and m.train_steps > 0
        accuracy = score(tmp_path / name / str(i), digits)
        assert accuracy["val_acc"] > 0.6, accuracy


# --------------------------------------------------------------------------- secrets in the driver
def evaluate_async(pool: LocalPool, digits: Dataset, code: str, out_dir: Path, name: str):
    return pool.submit(make_job(pool, digits, code, candidate_id=name[:40]), out_dir)


def test_secrets_in_the_driver_environment_never_reach_a_candidate(monkeypatch, digits: Dataset, tmp_path):
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    probes = [c for c in CORPUS if "environ" in c.name and c.static_skip]
    assert len(probes) >= 2
    modes = [m for m in MODES if m == "hook" or os.geteuid() == 0]
    limits = {"hook": SANDBOX_LIMITS, "os": OS_LIMITS}
    # Started after the secrets were set, one pool per mode, side by side.
    pools = {m: LocalPool(1, limits[m]) for m in modes}
    try:
        futures = {}
        for mode, p in pools.items():
            write_worker_data(p.data_dir, digits)
            for case in probes:
                out = tmp_path / mode / case.name
                futures[case.name, mode] = (case, out, evaluate_async(p, digits, case.source, out, case.name))
        for (name, mode), (case, out, future) in futures.items():
            result = future.result()
            assert not result.ok and result.stage.value == case.expect(mode), f"{name} ({mode}): {result}"
            assert _message_matches(case, mode, result.message), f"{name} ({mode}): {result.message}"
            texts = [result.message] + [p.read_bytes().decode(errors="replace") for p in out.iterdir()]
            for secret in SECRETS.values():
                assert not any(secret in text for text in texts), f"{name} ({mode}) saw {secret}"
        for mode in pools:
            stdout = (tmp_path / mode / "os_environ_probe" / "stdout.txt").read_text()
            assert "== /proc/self/environ" in stdout and "HOME=" in stdout  # the probe did look
    finally:
        for p in pools.values():
            p.close()


ENV_PROBE = """
import math
import os

import torch.nn as nn


def build_model(input_shape, num_classes):
    seen = {k: os.environ.get(k) for k in ("PATH", "CUDA_VISIBLE_DEVICES", "HOME", "OPENAI_API_KEY")}
    raise RuntimeError(f"env {seen!r}")
"""


def test_a_candidate_keeps_the_variables_it_needs(monkeypatch, digits: Dataset, tmp_path):
    """The scrubbed environment keeps PATH and the slot's CUDA_VISIBLE_DEVICES, and nothing secret."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRETS["OPENAI_API_KEY"])
    with LocalPool(1, SANDBOX_LIMITS, gpus=["0"]) as one:  # CUDA is never touched: a CPU job
        write_worker_data(one.data_dir, digits)
        result = evaluate(one, digits, ENV_PROBE, tmp_path / "env", candidate_id="env")
    found = re.search(r"env (\{.*?\})", result.message)
    assert found, result
    seen = ast.literal_eval(found.group(1))
    assert seen["OPENAI_API_KEY"] is None and seen["HOME"]
    assert seen["PATH"] == os.environ["PATH"], f"PATH lost: {seen}"
    assert seen["CUDA_VISIBLE_DEVICES"] == "0", (
        f"the slot's GPU is lost: every slot would use them all: {seen}"
    )


# --------------------------------------------------------------------------- a search around them
GOOD_MLP = """
import math
import torch.nn as nn


def build_model(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), 32), nn.ReLU(), nn.Linear(32, num_classes))
"""


def _admit(monkeypatch, escapes: list[str]) -> None:
    """Let these codes past the static checks, as an escape nobody knows of yet would get past them;
    every other code is checked as usual."""
    real = validate.check
    admitted = set(escapes)

    def check(code: str, allowed_imports=validate.DEFAULT_ALLOWED_IMPORTS, **limits):
        if code in admitted:
            normalised = validate.normalise(code)
            return validate.Checked(normalised, validate.candidate_id(normalised))
        return real(code, allowed_imports, **limits)

    monkeypatch.setattr(validate, "check", check)


def _id(code: str) -> str:
    """The candidate id a search gives ``code`` (checked or admitted)."""
    return validate.candidate_id(validate.normalise(code))


def _search(pool: LocalPool, digits: Dataset, folder: Path, codes: list[str], max_params: int | None = None):
    cfg = RunConfig(
        requirements="classify 8x8 grayscale digits into 10 classes",
        data="digits",
        max_samples=300,
        budget=len(codes),
        workers=2,
        train=TrainConfig(max_steps=100, eval_every=50),
        limits=pool.limits,
        repair_attempts=0,
    )
    spec = make_spec(cfg, digits)
    if max_params is not None:
        spec = spec.model_copy(update={"max_params": max_params})
    store = RunStore.create(folder, {"config": cfg.model_dump(mode="json")}, cfg.requirements)
    try:
        result = Search(
            cfg, spec, digits, ListProposer(codes), pool, store, progress=False, listeners=[BestExport()]
        ).run(cfg.budget)
    finally:
        store.close()
    return result, logged(store.folder)


@pytest.mark.skipif(os.geteuid() != 0, reason=NOT_ROOT)
def test_a_search_continues_around_hostile_candidates(
    os_pool: LocalPool, digits: Dataset, tmp_path, monkeypatch
):
    """A search on the hook-off pool, with OS-level attacks let past the static checks (as if they had
    found an escape): each ends in its own stage, and the good models after them still win."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.setblocking(False)
    values = {"PORT": str(listener.getsockname()[1])}
    escapes = {  # name -> (stage, message), without the hook
        "os_fork_bomb": ("build", "BlockingIOError"),
        "os_exit_via_torch": ("crash", "exited with status 3"),
        "os_socket_loopback": ("build", "Network is unreachable"),
        "os_forged_result": ("crash", "the training process exited without a valid report"),
        "os_kill_zygote": ("build", "Operation not permitted"),
    }
    checked = {  # name -> stage, through the real static checks
        "static_import_os": "static",
        "escape_forwardref_exit": "static",
        "nan_output": "train",
        "wrong_output_shape": "shape",
        "memory_bomb_torch_empty": "memory",
        "system_exit_in_build": "build",
        "shape_shifter_global_state": "train",
    }
    code = {name: BY_NAME[name].code(values) for name in (*escapes, *checked, "monkeypatch_scorer")}
    _admit(monkeypatch, [code[n] for n in escapes])
    order = [  # the fork bomb early, so later candidates share its slot
        "os_fork_bomb", "static_import_os", "nan_output", "os_exit_via_torch", "wrong_output_shape",
        "os_socket_loopback", "memory_bomb_torch_empty", "escape_forwardref_exit", "os_forged_result",
        "system_exit_in_build", "os_kill_zygote", "shape_shifter_global_state",
    ]  # fmt: skip
    codes = [GOOD_CNN, *(code[n] for n in order), GOOD_MLP, code["monkeypatch_scorer"]]
    try:
        result, events = _search(os_pool, digits, tmp_path / "run", codes)
        with contextlib.suppress(BlockingIOError):
            conn, _ = listener.accept()
            pytest.fail(f"a candidate reached the listener: {conn.recv(100)!r}")
    finally:
        listener.close()

    evaluations = {e["candidate_id"]: e for e in events if e["type"] == "evaluation"}
    proposals = [e for e in events if e["type"] == "proposal"]
    n_static = sum(stage == "static" for stage in checked.values())
    assert result.stats["proposals"] == len(codes) == len(proposals)
    assert result.evaluations == len(codes) - n_static == len(evaluations)
    assert [p["stage"] for p in proposals].count("static") == n_static
    for name, (stage, message) in escapes.items():
        event = evaluations[_id(code[name])]
        assert not event["ok"] and event["stage"] == stage, f"{name}: {event['stage']}: {event['message']}"
        assert message in event["message"], f"{name}: {event['message']}"
        assert event["reward"] < 0
    for name, stage in checked.items():
        if stage == "static":
            continue
        event = evaluations[validate.check(code[name]).candidate_id]
        assert not event["ok"] and event["stage"] == stage, f"{name}: {event['stage']}: {event['message']}"
        assert event["reward"] < 0
    for name, good in (("good_cnn", GOOD_CNN), ("good_mlp", GOOD_MLP)):
        event = evaluations[_id(good)]
        assert event["ok"], f"{name}: {event['stage']}: {event['message']}"
        assert event["metrics"]["val_acc"] > 0.3
    cheat = evaluations[_id(code["monkeypatch_scorer"])]
    assert cheat["ok"] and cheat["metrics"]["val_acc"] < CHANCE and cheat["metrics"]["test_acc"] < CHANCE
    assert result.best is not None and result.best.candidate_id in (_id(GOOD_CNN), _id(GOOD_MLP))
    assert (tmp_path / "run" / "best" / "model.py").is_file()
    assert not [p.name for p in (tmp_path / "run" / "best").iterdir() if p.suffix in (".pt", ".pth", ".pkl")]


def test_a_forged_result_cannot_derail_a_search(pool: LocalPool, digits: Dataset, tmp_path, monkeypatch):
    """Candidates that write their own ok result.json come first: one with junk weights from the
    training process (one parameter claimed); two that forge (a parameter count, out-of-range values)
    from build_model where the weights exist, which only scoring from code reached: scored as the
    linear models they trained."""
    forged = BY_NAME["os_forged_result"].source
    params = BY_NAME["os_forged_params"].source
    huge = BY_NAME["os_forged_result_out_of_range"].source
    _admit(monkeypatch, [forged, params, huge])
    codes = [forged, params, huge, GOOD_CNN]
    result, events = _search(pool, digits, tmp_path / "run", codes, CORPUS_MAX_PARAMS)
    evaluations = {e["candidate_id"]: e for e in events if e["type"] == "evaluation"}
    junk, over, invalid = evaluations[_id(forged)], evaluations[_id(params)], evaluations[_id(huge)]
    assert not junk["ok"], f"BUG: forged result accepted with metrics {junk['metrics']}"
    assert junk["stage"] == "crash" and "exited without a valid report" in junk["message"], junk
    for honest in (over, invalid):
        assert honest["ok"] and honest["metrics"]["params"] == 650, honest  # the trained Linear(64, 10)
    assert result.best is not None and result.best.candidate_id == _id(GOOD_CNN)
