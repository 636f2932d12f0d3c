"""The `llmnas` command line. Every error is one line that names the flag to fix."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from pydantic import ValidationError

EXIT_OK, EXIT_REJECTED, EXIT_USAGE, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class UsageError(Exception):
    """A bad argument or value: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump
        raise UsageError(f"{self.prog}: {message} (see --help)")


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


def _positive_int(flag: str):
    return _number(flag, int, positive=True)


def _int(flag: str):
    return _number(flag, int)


def _positive_float(flag: str):
    return _number(flag, float, positive=True)


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        type=Path,
        help="TOML or JSON file of run settings (any RunConfig field, e.g. llm, budget, train.max_steps); "
        "flags override it",
    )
    p.add_argument(
        "--data",
        default=None,
        help="digits | mnist1d | FILE.npz | FILE.csv | IMAGE_FOLDER | torchvision:NAME (default: digits)",
    )
    p.add_argument("--label-column", help="label column of a CSV dataset")
    p.add_argument("--data-root", help="root folder of a torchvision dataset")
    p.add_argument(
        "--max-samples", type=_positive_int("--max-samples"), help="subsample the data (quick runs)"
    )
    p.add_argument("--seed", type=_int("--seed"), help="seed of the one RNG the run uses (default: 0)")


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=_positive_int("--steps"), help="training steps per candidate")
    p.add_argument(
        "--train-seconds",
        type=_positive_float("--train-seconds"),
        help="train by time too: stop after this many seconds (results then depend on load)",
    )
    p.add_argument(
        "--timeout", type=_positive_float("--timeout"), help="hard wall-clock limit per candidate (s)"
    )
    p.add_argument("--memory-mb", type=_positive_int("--memory-mb"), help="memory limit per candidate (MiB)")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), help="where candidates train (default: cpu)")
    p.add_argument(
        "--allow-import",
        action="append",
        default=[],
        metavar="MODULE",
        help="extend the candidate import allow-list (repeatable)",
    )
    p.add_argument(
        "--power-watts",
        type=_positive_float("--power-watts"),
        help="power drawn per worker, for the energy estimate (default: 20)",
    )
    p.add_argument(
        "--carbon-intensity",
        type=_positive_float("--carbon-intensity"),
        help="grid gCO2 per kWh, for the CO2 estimate (default: 475)",
    )


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
    _add_data_args(s)
    s.add_argument("--budget", type=_positive_int("--budget"), help="candidates to propose (default: 24)")
    s.add_argument(
        "--workers", type=_positive_int("--workers"), help="parallel sandboxed workers (default: cores)"
    )
    s.add_argument("--llm", help="offline | openai:MODEL | URL#MODEL | hf:PATH (default: offline)")
    s.add_argument(
        "--strategy",
        choices=("rl", "random"),
        help="offline proposer: the RL controller with mutations, or random search (baseline)",
    )
    s.add_argument(
        "--prescreen",
        choices=("synflow", "naswot", "grad_norm", "snip", "params", "flops"),
        help="rank each round's candidates by this zero-cost proxy and train only the best",
    )
    s.add_argument(
        "--prescreen-keep",
        type=_positive_float("--prescreen-keep"),
        help="fraction of each round trained after --prescreen (default: 0.5)",
    )
    s.add_argument(
        "--executor",
        choices=("local", "ray"),
        help="where candidates run: this machine, or a Ray cluster (pip install 'llmnas[ray]'; docs/ray.md)",
    )
    s.add_argument(
        "--ray-address", help="Ray cluster for --executor ray: HOST:6379 or auto (default: a local instance)"
    )
    s.add_argument(
        "--gpus-per-task",
        type=_positive_float("--gpus-per-task"),
        help="GPUs per Ray worker (default: 1 with --device cuda, else 0)",
    )
    s.add_argument(
        "--llm-timeout", type=_positive_float("--llm-timeout"), help="seconds per LLM call (default: 120)"
    )
    s.add_argument(
        "--llm-retries", type=_int("--llm-retries"), help="retries on 429/5xx/timeouts (default: 5)"
    )
    s.add_argument(
        "--llm-max-tokens",
        type=_positive_int("--llm-max-tokens"),
        help="longest reply the model may write, in tokens (default: 2048)",
    )
    s.add_argument(
        "--finetune-every",
        type=_positive_int("--finetune-every"),
        help="with --llm hf:PATH, train a LoRA adapter on the best traces every K proposals",
    )
    s.add_argument(
        "--finetune-steps", type=_positive_int("--finetune-steps"), help="steps per fine-tuning round"
    )
    s.add_argument("--api-key", help="API key for --llm (default: $OPENAI_API_KEY; never written to the run)")
    s.add_argument(
        "--max-tokens", type=_positive_int("--max-tokens"), help="end the run after this many LLM tokens"
    )
    s.add_argument(
        "--max-cost", type=_positive_float("--max-cost"), help="end the run after this LLM cost (USD)"
    )
    s.add_argument(
        "--repair-attempts",
        type=_int("--repair-attempts"),
        help="times a rejected reply goes back to the model with its error (default: 2)",
    )
    s.add_argument("--out", type=Path, help="run folder (default: results/<time>-<data>-s<seed>)")
    s.add_argument("--json", action="store_true", help="print the result as JSON")
    _add_train_args(s)

    r = sub.add_parser(
        "resume", help="continue an interrupted run", description="Continue an interrupted run."
    )
    r.add_argument("run", type=Path, help="results/<run-id>")
    r.add_argument("--budget", type=_positive_int("--budget"), help="new total candidate budget")
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
        "--budget", type=_positive_int("--budget"), help="more candidates (default: the run's budget)"
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
    _add_data_args(e)
    e.add_argument(
        "--requirements",
        default="evaluate a hand-written model",
        help='limits to check, e.g. "under 20k parameters; under 1 ms"',
    )
    e.add_argument("--out", type=Path, help="keep the evaluation's files here")
    e.add_argument("--json", action="store_true", help="print the result as JSON")
    _add_train_args(e)
    x = sub.add_parser(
        "export",
        help="a standalone model file, weights and README for one candidate",
        description="Export a candidate (default: the run's best) as a standalone bundle.",
    )
    x.add_argument("run", type=Path, help="results/<run-id>")
    x.add_argument("--candidate", help="candidate id (default: the best by validation accuracy)")
    x.add_argument("--out", type=Path, required=True, help="folder to write")

    t = sub.add_parser(
        "traces",
        help="export every proposal's trace as a JSONL dataset (TRL-readable)",
        description="Export (prompt, completion, reward, status) of every proposal as JSONL.",
    )
    t.add_argument("run", type=Path, help="results/<run-id>")
    t.add_argument("--out", type=Path, required=True, help="JSONL file to write")
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
    sh.add_argument("--top", type=_positive_int("--top"), help="only the best N")
    return root


def _config(args: argparse.Namespace, requirements: str, **extra):
    from llmnas.config import RunConfig

    train = {
        k: v for k, v in (("max_steps", args.steps), ("max_seconds", args.train_seconds)) if v is not None
    }
    limits = {k: v for k, v in (("timeout_s", args.timeout), ("memory_mb", args.memory_mb)) if v is not None}
    flags = dict(
        requirements=requirements,
        data=args.data,
        label_column=args.label_column,
        data_root=args.data_root,
        max_samples=args.max_samples,
        seed=args.seed,
        device=args.device,
        power_watts=args.power_watts,
        carbon_g_per_kwh=args.carbon_intensity,
        extra_imports=tuple(args.allow_import) or None,
        **extra,
    )
    fields = _config_file(args.config) if args.config else {}
    fields.update({k: v for k, v in flags.items() if v is not None})
    fields["train"] = {**fields.get("train", {}), **train}
    fields["limits"] = {**fields.get("limits", {}), **limits}
    try:
        return RunConfig(**fields)
    except ValidationError as exc:
        where = f"--config {args.config}: " if args.config else ""
        raise UsageError(where + _one_line(exc)) from None


def _config_file(path: Path) -> dict:
    """Run settings from a TOML or JSON file; one clear line if it cannot be read."""
    import tomllib

    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--config {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UsageError(f"--config {path}: expected a table of settings")
    data.pop("requirements", None)
    return data


def _summary(result) -> dict:
    best = result.best
    return {
        "run_dir": str(result.run_dir),
        "evaluations": result.evaluations,
        "stats": result.stats,
        "best": None if best is None else {"candidate_id": best.candidate_id, **best.metrics},
        "front": [{"candidate_id": e.candidate_id, **e.metrics} for e in result.front],
    }


def _report_result(result, as_json: bool) -> int:
    if as_json:
        print(json.dumps(_summary(result), indent=1))
        return EXIT_OK
    best = result.best
    if best is None:
        print(f"\nNo candidate passed. Everything is in {result.run_dir}")
    else:
        m = best.metrics
        print(
            f"\nBest: {best.candidate_id}  val {m['val_acc']:.4f}  test {m['test_acc']:.4f}  "
            f"params {int(m['params']):,}  latency {m['latency_ms']:.3f} ms"
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
    from llmnas.run import start

    extra = {
        "budget": args.budget,
        "workers": args.workers,
        "llm": args.llm,
        "strategy": args.strategy,
        "max_tokens": args.max_tokens,
        "max_cost_usd": args.max_cost,
        "repair_attempts": args.repair_attempts,
    }
    if (args.ray_address or args.gpus_per_task) and args.executor != "ray":
        raise ValueError("--ray-address and --gpus-per-task need --executor ray")
    extra.update(
        prescreen=args.prescreen,
        prescreen_keep=args.prescreen_keep,
        llm_timeout_s=args.llm_timeout,
        llm_retries=args.llm_retries,
    )
    extra.update(
        finetune_every=args.finetune_every,
        finetune_steps=args.finetune_steps,
        llm_max_tokens=args.llm_max_tokens,
    )
    extra.update(executor=args.executor, ray_address=args.ray_address, gpus_per_task=args.gpus_per_task)
    cfg = _config(args, args.requirements, **extra)
    return _report_result(
        start(cfg, args.out, api_key=args.api_key, progress=not args.json, announce=_announcer(args.json)),
        args.json,
    )


def cmd_resume(args: argparse.Namespace) -> int:
    from llmnas.run import resume

    return _report_result(
        resume(args.run, budget=args.budget, api_key=args.api_key, progress=not args.json), args.json
    )


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

    cfg = _config(args, args.requirements, workers=1)
    outcome = evaluate_file(args.file, cfg, args.out)
    if args.json:
        print(json.dumps(outcome, indent=1))
    elif outcome["ok"]:
        m = outcome["metrics"]
        print(
            f"ok  val {m['val_acc']:.4f}  test {m['test_acc']:.4f}  params {m['params']:,}  "
            f"FLOPs {m['flops']:,}  latency {m['latency_ms']:.3f} ms (IQR {m['latency_iqr_ms']:.3f})  "
            f"peak mem {m['peak_mem_mb']:.1f} MiB  trained {m['train_steps']} steps in {m['train_seconds']:.1f} s  "
            f"energy ~{m['energy_kwh'] * 1000:.3g} Wh, ~{m['co2_g']:.2g} g CO2 (estimated)"
        )
    else:
        print(f"rejected at stage {outcome['stage']}: {outcome['message']}")
    return EXIT_OK if outcome["ok"] else EXIT_REJECTED


def cmd_export(args: argparse.Namespace) -> int:
    from llmnas.export import export_run

    print(export_run(args.run, args.out, args.candidate))
    return EXIT_OK


def cmd_traces(args: argparse.Namespace) -> int:
    from llmnas.traces import export_traces

    count = export_traces(args.run, args.out, min_reward=args.min_reward)
    print(f"{count} traces written to {args.out}")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from llmnas.report import render_report

    print(render_report(args.run, args.out))
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    from llmnas.leaderboard import format_runs, runs

    rows = runs(args.results)
    print(json.dumps(rows, indent=1, default=str) if args.json else format_runs(rows))
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from llmnas.leaderboard import format_leaderboard, leaderboard

    rows = leaderboard(args.run)[: args.top]
    print(json.dumps(rows, indent=1) if args.json else format_leaderboard(rows))
    return EXIT_OK


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
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    from llmnas.datasets import DatasetError
    from llmnas.llm import LLMError
    from llmnas.spec import SpecError

    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except (
        DatasetError,
        SpecError,
        LLMError,
        FileNotFoundError,
        FileExistsError,
        ValueError,
        UsageError,
        ImportError,
        ConnectionError,
    ) as exc:
        message = _one_line(exc)
        print(f"llmnas {args.command}: error: {message}", file=sys.stderr)
        return (
            EXIT_USAGE
            if isinstance(exc, ValidationError | DatasetError | SpecError | UsageError)
            else EXIT_ERROR
        )


def _one_line(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        return f"{where}: {err['msg']}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
