"""Benchmark tasks with headroom for comparing search strategies (issue 30).

The built-in tasks saturate within a few random candidates, so nothing can tell the strategies apart.
Each task here is a dataset made harder (fewer training samples, noisy labels or inputs), a parameter
limit that puts much of the space out of reach, and a short training budget (a few hundred steps, a few
seconds per candidate on one thread). bench/nas_table.py trains a uniform sample of the space once per
task into an evaluation table (bench/data/tables/<task>.json); bench/data/tables/README.md has the
numbers: the random-search reference curve, the headroom check and the surrogate's error.

Every task loads through llmnas's own `load_dataset` (the same splits and preprocessing a run gets),
then changes the *training* split only (subsample, label noise) or every split alike (input noise),
with its own seeded RNG: the validation and test labels are never touched.

The real-world task reads a UCR archive dataset from the sktime wheel on PyPI (sktime 1.2.0 ships a few
UCR datasets as .ts files under sktime/datasets/data/). Nothing of sktime is imported: the files are
read from the installed package if there is one, else from the wheel, fetched once with

    pip download --no-deps sktime==1.2.0 -d ~/.cache/llmnas-bench
"""

from __future__ import annotations

import importlib.util
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import numpy as np

from llmnas.task.datasets import Dataset, load_dataset
from sandbox.protocol import TrainConfig

CACHE = Path(os.environ.get("LLMNAS_BENCH_CACHE", Path.home() / ".cache" / "llmnas-bench"))
SKTIME_WHEEL = "sktime-1.2.0-py3-none-any.whl"
DATA_SEED = 0  # the split and every perturbation of the data


@dataclass(frozen=True)
class Task:
    name: str
    about: str  # one line: the data, and what makes it hard
    modality: str  # llmnas.propose.space's: "image", "sequence" or "tabular"
    load: Callable[[], Dataset]
    max_params: int
    train: TrainConfig
    # Test accuracy a strategy must reach (candidates-to-target), fixed once the task's table was built and
    # before any strategy comparison ran: the 90th percentile of test accuracy over the table's trained
    # rows, rounded down to a multiple of 0.005. Not to be retuned after looking at a strategy's results.
    target: float | None = None


# ------------------------------------------------------------------------------------ perturbations


def harder(
    data: Dataset,
    *,
    train_per_class: int | None = None,
    label_noise: float = 0.0,
    input_noise: float = 0.0,
    seed: int = DATA_SEED,
) -> Dataset:
    """``data`` with at most ``train_per_class`` training samples of each class, a ``label_noise``
    fraction of the training labels replaced by a uniformly drawn other class, and Gaussian noise of
    ``input_noise`` standard deviations (of the training inputs) added to every split's inputs."""
    rng = np.random.default_rng(seed)
    x, y = data.x_train, data.y_train
    if train_per_class is not None:
        keep = np.concatenate(
            [rng.permutation(np.flatnonzero(y == c))[:train_per_class] for c in range(data.num_classes)]
        )
        keep = rng.permutation(keep)
        x, y = x[keep], y[keep]
    if label_noise:
        flip = rng.random(len(y)) < label_noise
        shift = rng.integers(1, data.num_classes, size=len(y))
        y = np.where(flip, (y + shift) % data.num_classes, y)
    splits = {"x_train": x, "x_val": data.x_val, "x_test": data.x_test}
    if input_noise:
        scale = input_noise * float(x.std())
        splits = {k: (v + rng.normal(0, scale, v.shape)).astype(np.float32) for k, v in splits.items()}
    return replace(data, y_train=y.astype(np.int64), **splits)


# ------------------------------------------------------------------------------------------ UCR data


def _ucr_text(name: str, split: str) -> str:
    """sktime/datasets/data/<name>/<name>_<split>.ts from an installed sktime, else from its wheel."""
    member = f"sktime/datasets/data/{name}/{name}_{split}.ts"
    spec = importlib.util.find_spec("sktime")  # finds the package without importing it
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))).parent / member
        if path.exists():
            return path.read_text()
    wheel = CACHE / SKTIME_WHEEL
    if not wheel.exists():
        raise FileNotFoundError(
            f"UCR dataset {name}: no sktime installed and no {wheel}; fetch the wheel with\n"
            f"    pip download --no-deps sktime==1.2.0 -d {CACHE}"
        )
    with zipfile.ZipFile(wheel) as z:
        return z.read(member).decode()


@cache
def ucr_file(name: str) -> Path:
    """One .ts file holding the archive's TRAIN and TEST series (llmnas makes its own stratified split):
    the TRAIN file, then the TEST file's series after its @data line."""
    train, test = _ucr_text(name, "TRAIN"), _ucr_text(name, "TEST")
    rows = test.splitlines()
    start = next(i for i, line in enumerate(rows) if line.strip().lower() == "@data") + 1
    path = CACHE / f"{name}_ALL.ts"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(train.rstrip("\n") + "\n" + "\n".join(rows[start:]) + "\n")
    return path


def pooled(data: Dataset, factor: int) -> Dataset:
    """Sequences shortened by averaging each run of ``factor`` positions (the tail that does not fill a
    run is dropped): a cheaper input for the same signal."""

    def pool(x: np.ndarray) -> np.ndarray:
        n = x.shape[-1] // factor * factor
        return x[..., :n].reshape(*x.shape[:-1], n // factor, factor).mean(-1).astype(np.float32)

    x_train, x_val, x_test = pool(data.x_train), pool(data.x_val), pool(data.x_test)
    return replace(data, x_train=x_train, x_val=x_val, x_test=x_test, input_shape=x_train.shape[1:])


# ------------------------------------------------------------------------------------------- the tasks

STEPS = TrainConfig(max_steps=300, eval_every=50)  # about 1-4 s a candidate on one thread


def _digits() -> Dataset:
    return harder(load_dataset("digits", seed=DATA_SEED), train_per_class=15, label_noise=0.2)


def _mnist1d() -> Dataset:
    return harder(load_dataset("mnist1d", seed=DATA_SEED), train_per_class=60)


def _osuleaf() -> Dataset:
    data = load_dataset(str(ucr_file("OSULeaf")), seed=DATA_SEED, val_fraction=0.2, test_fraction=0.2)
    return pooled(data, 4)


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task(
            "digits-hard",
            "scikit-learn's 8x8 digits, 15 training images a class, 20% of their labels wrong",
            "image",
            _digits,
            max_params=3000,
            train=STEPS,
            target=0.805,  # q90 0.8067
        ),
        Task(
            "mnist1d-hard",
            "MNIST-1D (generated, 40 samples long), 60 training series a class",
            "sequence",
            _mnist1d,
            max_params=4000,
            train=STEPS,
            target=0.85,  # q90 0.8542
        ),
        Task(
            "osuleaf",
            "UCR OSULeaf (leaf outlines, 6 classes, 442 series) from the sktime wheel, shortened 4x",
            "sequence",
            _osuleaf,
            max_params=10000,
            train=STEPS,
            target=0.815,  # q90 0.8182
        ),
    )
}
