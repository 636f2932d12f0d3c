"""The built-in datasets, generated or shipped offline: scikit-learn's digits and diabetes, and MNIST-1D
(made by the mnist1d package, never downloaded)."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import numpy as np

from llmnas.task.loaders import Raw
from llmnas.task.preprocess import Preprocessing


def digits() -> Raw:
    """scikit-learn's 8x8 digits, read from the file scikit-learn ships without importing scikit-learn
    (1.5 s of every driver's start); through ``load_digits`` where the file is not where it has always been."""
    spec = importlib.util.find_spec("sklearn")
    path = Path(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz") if spec else None
    if path is not None and path.is_file():
        table = np.loadtxt(path, delimiter=",")
        images, target = table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(int)
    else:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images, target = bunch.images, bunch.target
    return Raw(images, target, Preprocessing("image", (8, 8), divide=16.0), np.arange(10))


def diabetes() -> Raw:
    """scikit-learn's diabetes progression (442 patients, 10 features): a regression built-in."""
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes(scaled=False)
    return Raw(bunch.data, bunch.target, Preprocessing("tabular", (10,)), task="regression")


def mnist1d(seed: int) -> Raw:
    """Generate MNIST-1D offline (never its download path, which writes a pickle into the cwd)."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed = seed
    states = random.getstate(), np.random.get_state()  # make_dataset reseeds the global RNGs
    try:
        data = make_dataset(args)
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
    pre = Preprocessing("sequence", data["x"].shape[1:])
    return Raw(data["x"], data["y"], pre, test=(data["x_test"], data["y_test"]))
