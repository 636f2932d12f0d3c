"""The Python API: one call runs a search and hands back the best model, the front and the folder."""

import pytest

from llmnas import search
from sandbox.protocol import TrainConfig

pytestmark = pytest.mark.sandbox


def test_search_from_python(tmp_path):
    result = search(
        "classify digits; under 20k parameters",
        data="digits",
        budget=4,
        seed=1,
        out=tmp_path / "r",
        workers=2,
        max_samples=400,
        train=TrainConfig(max_steps=60),
    )
    assert result.run_dir == tmp_path / "r"
    assert result.best is not None and result.best.metrics["params"] <= 20_000
    assert result.best.candidate_id in {e.candidate_id for e in result.front}
    assert (result.run_dir / "best" / "model.py").is_file()
