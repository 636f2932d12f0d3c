"""The `llmnas` command line. Every error is one line that names the flag to fix.

Flags come from RunConfig (config.py); this file holds the commands around them. Over 400 lines as
one cohesive thing: one parser and one short function per command, so `--help` and behaviour stay
together.
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import os
import re
import sys
import tempfile
import traceback
import typing
from pathlib import Path
from typing import Any, Literal

from llmnas.errors import RunFailed, UserError

# 0 success; 1 nothing passed, a rejected model, or the run could not go on; 2 bad input; 130 Ctrl-C.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump
        raise UserError(f"{self.prog}: {message}{self._did_you_mean(message)} (see --help)")

    def _did_you_mean(self, message: str) -> str:
        """ "; did you mean --steps?" for a mistyped flag or command."""
        if m := re.search(r"unrecognized arguments: (.*)", message):
            words, known = [w.split("=")[0] for w in m.group(1).split() if w.startswith("-")], self._flags()
        elif m := re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message):
            words, known = [m.group(1)], re.findall(r"'?([\w-]+)'?", m.group(2))
        else:
            return ""
        close = [c for w in words for c in difflib.get_close_matches(w, known, n=1, cutoff=0.6)]
        return f"; did you mean {' or '.join(close)}?" if close else ""

    def _flags(self) -> list[str]:
        """Every option string of this parser and its sub-commands."""
        out = []
        for action in self._actions:
            out += action.option_strings
            if isinstance(action, argparse._SubParsersAction):
                out += [flag for sub in action.choices.values() for flag in sub._flags()]
        return out


def _number(flag: str, cast: type = int, positive: bool = False):
    """An argparse type whose error names the flag: a whole number (``int``) or any number (``float``)."""
    kind = "a whole number" if cast is int else "a number"

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be {kind}, got {text!r}") from None
        if positive and not value > 0:
            raise argparse.ArgumentTypeError(f"{flag} must be positive, got {text}")
        return value

    return parse


def _settings() -> list[tuple[str, str, Any, str, str]]:
    """(flag, setting name, annotation, help, group) for every RunConfig setting with a flag."""
    from llmnas.config import NESTED_FLAGS, RunConfig

    out = []
    for name, info in RunConfig.model_fields.items():
        extra = info.json_schema_extra or {}
        if extra["group"] == "none":
            continue
        default = "" if info.default_factory or info.default in (None, ()) else f" (default: {info.default})"
        out.append(
            (
                extra.get("flag", name.replace("_", "-")),
                name,
                info.annotation,
                info.description + default,
                extra["group"],
            )
        )
    for key, (parent, child, text) in NESTED_FLAGS.items():
        info = RunConfig.model_fields[parent].annotation.model_fields[child]
        default = f" (default: {info.default})" if info.default is not None else ""
        out.append((key.replace("_", "-"), key, info.annotation, text + default, "train"))
    return out


def _add_settings(p: argparse.ArgumentParser, groups: tuple[str, ...]) -> None:
    """Flags generated from RunConfig: a new setting there is a new flag here."""
    p.add_argument(
        "--config",
        type=Path,
        help="TOML or JSON file of run settings (any RunConfig field, e.g. llm, budget, train.max_steps); "
        "flags override it",
    )
    for flag, name, annotation, text, group in _settings():
        if group not in groups:
            continue
        args = typing.get_args(annotation)
        kinds = {a for a in (args or (annotation,)) if a is not type(None)}
        literal = next((a for a in kinds if typing.get_origin(a) is Literal), None)
        option = {"dest": name, "help": text, "default": None, "metavar": flag.upper().replace("-", "_")}
        if typing.get_origin(annotation) is tuple:
            option.update(action="append", metavar="MODULE")
        elif literal is not None or typing.get_origin(annotation) is Literal:
            option["choices"] = typing.get_args(literal or annotation)
            del option["metavar"]
        elif kinds == {bool}:
            option["action"] = "store_true"
            del option["metavar"]
        elif kinds & {int, float}:
            option["type"] = _number(f"--{flag}", int if int in kinds else float)
        p.add_argument(f"--{flag}", **option)


def build_parser() -> argparse.ArgumentParser:
    root = _Parser(prog="llmnas", description="LLM-guided neural architecture search.")
    root.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = root.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser(
        "search",
        help="search for a model that meets plain-English requirements",
        description="Search for a model that meets plain-English requirements.",
    )
    s.add_argument("requirements", help='e.g. "classify 8x8 digits; under 20k parameters; under 1 ms on CPU"')
    _add_settings(s, ("data", "train", "search"))
    s.add_argument("--api-key", help="API key for --llm (default: $OPENAI_API_KEY; never written to the run)")
    s.add_argument("--out", type=Path, help="run folder (default: results/<time>-<data>-s<seed>)")
    s.add_argument("--json", action="store_true", help="print the result as JSON")
    s.add_argument(
        "--dry-run",
        action="store_true",
        help="print the spec, the data, the training budget and a time estimate from one probe; then exit "
        "(with --json: the parsed spec as one JSON object, no probe)",
    )

    r = sub.add_parser(
        "resume", help="continue an interrupted run", description="Continue an interrupted run."
    )
    r.add_argument("run", type=Path, help="results/<run-id>")
    r.add_argument("--budget", type=_number("--budget", positive=True), help="new total candidate budget")
    r.add_argument("--api-key", help="API key for the run's --llm (default: $OPENAI_API_KEY)")
    r.add_argument("--json", action="store_true", help="print the result as JSON")

    f = sub.add_parser(
        "refine",
        help="give a run new instructions and continue it",
        description="Append new instructions, re-derive the spec, keep the archive and policy, continue.",
    )
    f.add_argument("run", type=Path, help="results/<run-id>")
    f.add_argument(
        "instructions", help='e.g. "latency matters more than accuracy now" or "under 5k parameters"'
    )
    f.add_argument(
        "--budget",
        type=_number("--budget", positive=True),
        help="more candidates (default: the run's budget)",
    )
    f.add_argument(
        "--interactive", action="store_true", help="ask for feedback in the terminal after each round"
    )
    f.add_argument("--api-key", help="API key for the run's --llm (default: $OPENAI_API_KEY)")
    f.add_argument("--json", action="store_true", help="print the result as JSON")

    e = sub.add_parser(
        "eval",
        help="evaluate one model file through the sandbox",
        description="Evaluate one model file through the same sandbox as a search.",
    )
    e.add_argument(
        "file", type=Path, help="a Python file defining build_model(input_shape, num_classes) or Model"
    )
    _add_settings(e, ("data", "train"))
    e.add_argument(
        "--requirements",
        default="evaluate a hand-written model",
        help='limits to check, e.g. "under 20k parameters; under 1 ms"',
    )
    e.add_argument(
        "--out",
        type=Path,
        help="keep the evaluation's files here (data only: weights, checked ONNX, predictions)",
    )
    e.add_argument("--force", action="store_true", help="replace files already in --out")
    e.add_argument("--json", action="store_true", help="print the result as JSON")
    x = sub.add_parser(
        "export",
        help="a candidate as ONNX + weights (data) and its code (untrusted), with a README",
        description=(
            "Export a candidate (default: the run's best): model.onnx and weights.safetensors (data, the "
            "safe way to run it), architecture.py (code written by a language model: untrusted) and a "
            "loader, model.py, whose load() runs that code only with trust_code=True or LLMNAS_TRUST_CODE=1."
        ),
    )
    x.add_argument("run", type=Path, help="results/<run-id>")
    x.add_argument("--candidate", help="candidate id (default: the one the spec chooses, as in best/)")
    x.add_argument("--out", type=Path, required=True, help="folder to write")
    x.add_argument("--force", action="store_true", help="replace files of the same names in --out")

    t = sub.add_parser(
        "traces",
        help="export every proposal's trace as a JSONL dataset (TRL-readable)",
        description="Export (prompt, completion, reward, status) of every proposal as JSONL.",
    )
    t.add_argument("run", type=Path, help="results/<run-id>")
    t.add_argument("--out", type=Path, required=True, help="JSONL file to write")
    t.add_argument("--force", action="store_true", help="replace --out if it exists")
    t.add_argument("--min-reward", type=float, help="keep only traces with at least this reward")

    rp = sub.add_parser(
        "report",
        help="write a self-contained RUN/report.html and RUN/plots/",
        description="Write a self-contained HTML report of a run (and its plots).",
    )
    rp.add_argument("run", type=Path, help="results/<run-id>")
    rp.add_argument("--out", type=Path, help="HTML file to write (default: RUN/report.html)")

    ls = sub.add_parser("list", help="list the runs in a results folder", description="List runs.")
    ls.add_argument("--results", type=Path, default=Path("results"), help="folder of runs (default: results)")
    ls.add_argument("--json", action="store_true", help="print JSON")

    sh = sub.add_parser("show", help="the leaderboard of a run", description="Show a run's leaderboard.")
    sh.add_argument("run", type=Path, help="results/<run-id>")
    sh.add_argument("--json", action="store_true", help="print JSON")
    sh.add_argument("--top", type=_number("--top", positive=True), help="only the best N")
    db = sub.add_parser(
        "dashboard",
        help="a live page of the runs on 127.0.0.1",
        description="Serve a page on 127.0.0.1 listing the runs and following the newest (or chosen) one: "
        "progress, Pareto front and leaderboard, refreshed as events arrive.",
    )
    db.add_argument(
        "results",
        nargs="?",
        type=Path,
        default=Path("results"),
        help="folder of runs, or one run (default: results)",
    )
    db.add_argument(
        "--port", type=_number("--port"), default=8765, help="port (default: 8765; 0 picks a free one)"
    )
    sub.add_parser(
        "doctor",
        help="which sandbox layers are in force on this host, and why not",
        description="Probe this host the way the sandbox uses it and say which layers hold.",
    )
    return root


def _config(args: argparse.Namespace, requirements: str, **overrides):
    """The RunConfig of a command: --config file, then flags, then ``overrides``; errors name the flag."""
    from llmnas.config import RunConfig

    given = {
        name: getattr(args, name) for _, name, *_ in _settings() if getattr(args, name, None) is not None
    }
    fields = _config_file(args.config) if args.config else {}
    try:
        return RunConfig.from_settings(**(fields | given | overrides), requirements=requirements)
    except UserError as exc:
        where = f"--config {args.config}: " if args.config else ""
        raise UserError(where + str(exc)) from None


def _config_file(path: Path) -> dict:
    """Run settings from a TOML or JSON file; one clear line if it cannot be read."""
    import tomllib

    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (OSError, ValueError) as exc:
        raise UserError(f"--config {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UserError(f"--config {path}: expected a table of settings")
    data.pop("requirements", None)
    return data


def _summary(result) -> dict:
    best = result.best
    return {
        "run_dir": str(result.run_dir),
        "evaluations": result.evaluations,
        "stats": result.stats,
        "best": None
        if best is None
        else {"candidate_id": best.candidate_id, **best.metrics, **result.best_test},
        "why": result.why,
        "front": [{"candidate_id": e.candidate_id, **e.metrics} for e in result.front],
        "final": None if result.final is None else result.final.model_dump(mode="json", exclude_none=True),
    }


def _report_result(result, as_json: bool) -> int:
    from llmnas.metrics import scores_text

    if as_json:
        print(json.dumps(_summary(result), indent=1))
        return EXIT_OK if result.best is not None else EXIT_FAILED
    best = result.best
    if best is None:
        print(f"\nNo candidate passed. Everything is in {result.run_dir}")
        return EXIT_FAILED
    m = best.metrics
    print(
        f"\nBest: {best.candidate_id}  {scores_text(m | result.best_test)}  "
        f"params {int(m['params']):,}  latency {m['latency_ms']:.3f} ms"
    )
    print(result.why)
    if final := result.final:
        print(
            f"Final: {best.candidate_id} trained again on train + validation ({final.train_samples:,} samples): "
            f"{scores_text(final.metrics.model_dump(), ('test',))} (reported once)"
            if final.ok
            else f"Final training of {best.candidate_id} failed ({final.stage}): {final.message}"
        )
    stats = result.stats
    if llm := stats.get("llm"):
        print(
            f"LLM: {llm['calls']} calls ({llm['failures']} failed), "
            f"{llm['prompt_tokens'] + llm['completion_tokens']:,} tokens, ~${llm['cost_usd']:.4f}"
        )
    if stats.get("proposals"):
        first, after, n = stats["valid_first_try"], stats["valid_after_repair"], stats["proposals"]
        print(f"Valid code: {first / n:.0%} of proposals on the first try, {after / n:.0%} after repair.")
    print(
        f"Pareto front: {len(result.front)} models. Results: {result.run_dir}  (best model: {result.run_dir}/best)"
    )
    return EXIT_OK


def _announcer(as_json: bool):
    """Messages for people go to stderr when stdout carries JSON for scripts."""
    return (lambda text: print(text, file=sys.stderr)) if as_json else print


def cmd_search(args: argparse.Namespace) -> int:
    cfg = _config(args, args.requirements)  # before the engine's imports: a bad value is told at once
    if args.dry_run:
        from llmnas.evaluate import dry_run, spec_json

        print(json.dumps(spec_json(cfg), indent=1) if args.json else "\n".join(dry_run(cfg)))
        return EXIT_OK
    from llmnas.run import start

    return _report_result(
        start(cfg, args.out, api_key=args.api_key, progress=not args.json, announce=_announcer(args.json)),
        args.json,
    )


def cmd_resume(args: argparse.Namespace) -> int:
    from llmnas.run import resume

    result = resume(
        args.run,
        budget=args.budget,
        api_key=args.api_key,
        progress=not args.json,
        announce=_announcer(args.json),
    )
    return _report_result(result, args.json)


def cmd_refine(args: argparse.Namespace) -> int:
    from llmnas.run import refine

    result = refine(
        args.run,
        args.instructions,
        budget=args.budget,
        interactive=args.interactive,
        api_key=args.api_key,
        progress=not args.json,
        announce=_announcer(args.json),
    )
    return _report_result(result, args.json)


def cmd_eval(args: argparse.Namespace) -> int:
    from llmnas.evaluate import evaluate_file
    from llmnas.metrics import scores_text

    cfg = _config(args, args.requirements, workers=1)
    outcome = evaluate_file(args.file, cfg, args.out, force=args.force)
    if args.json:
        print(json.dumps(outcome, indent=1))
    elif outcome["ok"]:
        m = outcome["metrics"]
        print(
            f"ok  {scores_text(m)}  params {m['params']:,}  "
            f"FLOPs {m['flops']:,}  latency {m['latency_ms']:.3f} ms (IQR {m['latency_iqr_ms']:.3f})  "
            f"peak mem {m['peak_mem_mb']:.1f} MiB  trained {m['train_steps']} steps in {m['train_seconds']:.1f} s  "
            f"energy ~{m['energy_kwh'] * 1000:.3g} Wh, ~{m['co2_g']:.2g} g CO2 (estimated)"
        )
    else:
        print(f"rejected at stage {outcome['stage']}: {outcome['message']}")
    if not args.json and "files" in outcome:
        print("\n".join(outcome["files"]["lines"]))
    return EXIT_OK if outcome["ok"] else EXIT_FAILED


def cmd_export(args: argparse.Namespace) -> int:
    from llmnas.results.export import export_run

    print("\n".join(export_run(args.run, args.out, args.candidate, force=args.force).lines()))
    return EXIT_OK


def cmd_traces(args: argparse.Namespace) -> int:
    from llmnas.finetune.traces import export_traces

    count = export_traces(args.run, args.out, min_reward=args.min_reward, force=args.force)
    print(f"{count} traces written to {args.out}")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from llmnas.report.html import render_report

    print(render_report(args.run, args.out))
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    from llmnas.results.read import runs
    from llmnas.results.tables import format_runs

    rows = runs(args.results)
    print(json.dumps(rows, indent=1, default=str) if args.json else format_runs(rows))
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from llmnas.results.read import leaderboard_rows, load_run, ranked
    from llmnas.results.tables import format_leaderboard

    run = load_run(args.run)
    rows = leaderboard_rows(run)[: args.top]
    print(json.dumps(rows, indent=1) if args.json else f"{format_leaderboard(rows)}\n{ranked(run)[1]}")
    return EXIT_OK


def cmd_dashboard(args: argparse.Namespace) -> int:
    from llmnas.report.dashboard import open_dashboard

    server, url = open_dashboard(args.results, args.port)
    print(f"Dashboard of {server.dashboard.results}: {url}  (Ctrl-C stops it)", flush=True)
    with server:
        server.serve_forever()
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from llmnas.execute.layers import containment

    layers = containment()
    for name, state in layers.items():
        print(f"{name:11} {state}")
    return EXIT_OK if all(not state.startswith("off") for state in layers.values()) else EXIT_FAILED


COMMANDS = {
    "search": cmd_search,
    "resume": cmd_resume,
    "refine": cmd_refine,
    "eval": cmd_eval,
    "export": cmd_export,
    "traces": cmd_traces,
    "report": cmd_report,
    "list": cmd_list,
    "show": cmd_show,
    "dashboard": cmd_dashboard,
    "doctor": cmd_doctor,
}


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UserError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except UserError as exc:
        print(f"llmnas {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - sorted below: expected failures, or a bug
        if isinstance(exc, RunFailed | OSError) or _is_llm_error(exc):
            print(f"llmnas {args.command}: error: {_one_line(exc)}", file=sys.stderr)
            return EXIT_FAILED
        where = _save_traceback(args)
        print(
            f"llmnas {args.command}: internal error (this is a bug): {_one_line(exc)}\n"
            f"The traceback is in {where}; please include it in a bug report.",
            file=sys.stderr,
        )
        if args.verbose:
            traceback.print_exc()
        return EXIT_FAILED


def _is_llm_error(exc: BaseException) -> bool:
    from llmnas.llm.chat import LLMError

    return isinstance(exc, LLMError)


def _save_traceback(args: argparse.Namespace) -> Path:
    """Append the current traceback to the run folder's log when there is one, else to a temp file."""
    from llmnas.runs.layout import RunLayout

    folder = getattr(args, "run", None) or getattr(args, "out", None)
    text = traceback.format_exc()
    if folder is not None and RunLayout(folder).is_run():
        path = RunLayout(folder).log
        with open(path, "a") as f:
            f.write(text)
        return path
    fd, name = tempfile.mkstemp(prefix="llmnas-error-", suffix=".log")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return Path(name)


def _one_line(exc: BaseException) -> str:
    """The first line of an error, with control characters escaped."""
    from llmnas.safe_text import escape_controls

    text = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
    return escape_controls(text)


if __name__ == "__main__":
    sys.exit(main())
