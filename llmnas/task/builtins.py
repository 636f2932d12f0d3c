"""The built-in datasets, generated or shipped offline: scikit-learn's digits and diabetes, and MNIST-1D
(made by the mnist1d package, never downloaded)."""

from __future__ import annotations

import random

import numpy as np

from llmnas.task.loaders import Raw
from llmnas.task.preprocess import Preprocessing


def digits() -> Raw:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return Raw(bunch.images, bunch.target, Preprocessing("image", (8, 8), divide=16.0), bunch.target_names)


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
