"""Carbon-aware scheduling: the forecast, the plan, the pacer between rounds, and a whole run on a
simulated clock (no real waiting), whose candidates and rewards match the same run without pacing."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import logged
from fakes.clock import SimClock

from llmnas.cli import main
from llmnas.config import RunConfig, deadline_at
from llmnas.engine.carbon import CarbonPacer, Grid, plan
from llmnas.engine.interrupt import StopFlag
from llmnas.errors import UserError
from llmnas.report.html import render_report
from llmnas.run import start
from llmnas.runs.events import PauseEvent
from llmnas.runs.store import RunStore

T0 = datetime(2026, 12, 3, tzinfo=UTC).timestamp()
HOUR = 3600.0
HIGH, LOW = 400.0, 50.0
LOW_HOURS = range(10, 14)


def write_forecast(path: Path, hours: int = 48) -> Path:
    """Hourly intensity from T0: HIGH, except LOW during LOW_HOURS."""
    rows = ["timestamp,gco2_per_kwh"]
    for h in range(hours):
        stamp = datetime.fromtimestamp(T0 + h * HOUR, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        rows.append(f"{stamp},{LOW if h in LOW_HOURS else HIGH}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_forecast_is_a_step_function_and_means_are_exact(tmp_path):
    grid = Grid.from_csv(write_forecast(tmp_path / "f.csv"))
    assert grid.at(T0 - 5) == HIGH  # before the first row: the first value
    assert grid.at(T0 + 10 * HOUR) == LOW and grid.at(T0 + 14 * HOUR - 1) == LOW
    assert grid.at(T0 + 100 * HOUR) == HIGH  # after the last row: the last value
    assert grid.mean(T0 + 9 * HOUR, T0 + 11 * HOUR) == pytest.approx((HIGH + LOW) / 2)
    assert grid.mean(T0 + 9.5 * HOUR, T0 + 10.5 * HOUR) == pytest.approx((HIGH + LOW) / 2)
    assert Grid.constant(475).mean(0, 1e9) == 475


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("2026-12-03T00:00,100\nnot-a-time,100\n", "line 2"),
        ("2026-12-03T00:00,100\n2026-12-03T01:00,-3\n", "line 2: intensity -3"),
        ("2026-12-03T00:00,100\n2026-12-03T00:00,90\n", "appears twice"),
        ("2026-12-03T00:00,100,7\n2026-12-03T01:00,1\n", "line 1"),
        ("timestamp,g\n", "no rows"),
    ],
)
def test_a_bad_forecast_is_one_line_naming_the_line(tmp_path, text, error):
    (tmp_path / "f.csv").write_text(text)
    with pytest.raises(UserError, match=error):
        Grid.from_csv(tmp_path / "f.csv")


def test_plan_starts_at_the_earliest_of_the_greenest_slots_and_never_misses_the_deadline(tmp_path):
    grid = Grid.from_csv(write_forecast(tmp_path / "f.csv"))
    deadline = T0 + 24 * HOUR
    assert plan(grid, T0, deadline, HOUR, rounds=2) == T0 + 10 * HOUR
    assert plan(grid, T0, deadline, 1.5 * HOUR, rounds=2) == T0 + 10 * HOUR  # not the slot at 10.5 h
    assert plan(grid, T0, deadline, HOUR, rounds=6) == T0  # four green hours do not hold six rounds
    assert plan(grid, T0 + 11 * HOUR, deadline, HOUR, rounds=2) == T0 + 11 * HOUR  # green now: go
    assert plan(grid, T0, T0 + 3 * HOUR, HOUR, rounds=3) == T0  # no slack
    assert plan(grid, T0, deadline, 0.0, rounds=2) == T0  # no estimate of a round yet
    assert plan(grid, deadline + HOUR, deadline, HOUR, rounds=1) == deadline + HOUR  # late: go now


def test_deadline_is_a_time_or_a_duration_and_needs_a_forecast():
    assert deadline_at("2026-12-03T06:00", 0) == T0 + 6 * HOUR
    assert deadline_at("12h", T0) == T0 + 12 * HOUR
    with pytest.raises(ValueError, match="neither a time"):
        deadline_at("soon", T0)
    with pytest.raises(UserError, match="go together"):
        RunConfig.from_settings(requirements="x", carbon_forecast="f.csv")
    with pytest.raises(UserError, match="deadline"):
        RunConfig.from_settings(requirements="x", carbon_forecast="f.csv", deadline="tomorrow")


class _Search:
    """What the pacer reads of a search."""

    def __init__(self, store: RunStore, budget: int, proposed: int, round_size: int):
        self.store, self.budget, self.proposed, self.round_size = store, budget, proposed, round_size
        self.stop = StopFlag()

    @property
    def finished(self) -> bool:
        return self.proposed >= self.budget


def test_pacer_pauses_between_rounds_until_the_green_window_without_waiting(tmp_path, monkeypatch):
    grid = Grid.from_csv(write_forecast(tmp_path / "f.csv"))
    clock = SimClock(T0)
    pacer = CarbonPacer(grid, T0 + 24 * HOUR, clock)
    store = RunStore.create(tmp_path / "run", {}, "x")
    search = _Search(store, budget=6, proposed=2, round_size=2)
    clock.t += HOUR  # the first round took an hour
    monkeypatch.setattr(time, "sleep", lambda s: pytest.fail(f"the pacer slept {s} s for real"))
    pacer(search)
    assert clock.t == pytest.approx(T0 + 10 * HOUR) and clock.slept == pytest.approx(9 * HOUR)
    (pause,) = store.replay().of(PauseEvent)
    assert pause.seconds == pytest.approx(9 * HOUR) and "50 gCO2/kWh instead of 400" in pause.reason
    clock.t += HOUR  # the second round, in the green window: the third goes on at once
    search.proposed = 4
    pacer(search)
    assert clock.t == pytest.approx(T0 + 11 * HOUR) and len(store.replay().of(PauseEvent)) == 1


def _run(tmp_path: Path, name: str, **settings):
    cfg = RunConfig.from_settings(
        requirements="classify; under 20k parameters",
        data="digits",
        max_samples=300,
        steps=20,
        budget=4,
        workers=2,
        **settings,
    )
    clock = SimClock(T0, tick=600)  # each reading of the clock: ten minutes of work
    start(cfg, tmp_path / name, progress=False, announce=lambda _: None, clock=clock)
    return [e for e in logged(tmp_path / name) if e["type"] in ("evaluation", "pause")], clock


@pytest.mark.sandbox
def test_a_paced_run_evaluates_in_the_green_window_with_the_same_candidates(tmp_path):
    forecast = write_forecast(tmp_path / "f.csv")
    paced, clock = _run(tmp_path, "paced", carbon_forecast=str(forecast), deadline="24h")
    assert clock.t - T0 > 10 * HOUR  # simulated hours (a real wait would end at the test's timeout)
    evaluations = [e for e in paced if e["type"] == "evaluation"]
    assert [e["type"] for e in paced].count("pause") >= 1
    deadline = T0 + 24 * HOUR
    for e in evaluations:
        at = datetime.fromisoformat(e["time"]).timestamp()
        m = e["metrics"]
        expected = HIGH if e["round"] == 0 else LOW  # the first round runs at once, to measure one
        assert m["carbon_g_per_kwh"] == pytest.approx(expected) and at < deadline
        assert m["co2_g"] == pytest.approx(m["energy_kwh"] * expected)
    plain, _ = _run(tmp_path, "plain")

    def outcomes(events):  # in log order within a round is the order workers finished in: sorted
        return sorted(
            (e["round"], e["candidate_id"], e["metrics"].get("val_acc"), e["reward"])
            for e in events
            if e["type"] == "evaluation"
        )

    assert outcomes(evaluations) == outcomes(plain) and len(evaluations) == 4
    page = render_report(tmp_path / "paced").read_text()
    assert "Energy and CO2" in page and "1 pause(s)" in page
    assert (tmp_path / "paced" / "plots" / "carbon.png").stat().st_size > 1000


def test_ctrl_c_during_a_pause_stops_the_run(tmp_path):
    grid = Grid.from_csv(write_forecast(tmp_path / "f.csv"))
    clock = SimClock(T0)
    pacer = CarbonPacer(grid, T0 + 24 * HOUR, clock)
    search = _Search(RunStore.create(tmp_path / "run", {}, "x"), budget=6, proposed=2, round_size=2)
    clock.t += HOUR
    search.stop.raised = True  # pressed once: the pause is a safe point
    with pytest.raises(KeyboardInterrupt):
        pacer(search)
    assert clock.slept == 0


def test_a_missing_forecast_is_an_error_before_the_run_folder_exists(tmp_path, capsys):
    argv = ["search", "x", "--data", "digits", "--budget", "1", "--out", str(tmp_path / "run")]
    assert main([*argv, "--carbon-forecast", str(tmp_path / "none.csv"), "--deadline", "2h"]) == 2
    assert "--carbon-forecast" in capsys.readouterr().err and not (tmp_path / "run").exists()
