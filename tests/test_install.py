"""A non-editable install works on its own: templates and the sandbox come from the installed package."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# It builds a wheel, installs it and runs it in subprocesses.
pytestmark = [pytest.mark.sandbox, pytest.mark.long]

MODEL = """
import torch.nn as nn

def build_model(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, num_classes))
"""


def test_wheel_install_finds_templates_and_sandbox(tmp_path: Path):
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next(wheels.glob("llmnas-*.whl"))
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (tmp_path / "model.py").write_text(MODEL)
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(target)!r})
        import llmnas, sandbox, llmnas.llm.prompts as prompts
        assert llmnas.__file__.startswith({str(target)!r}), llmnas.__file__
        assert sandbox.__file__.startswith({str(target)!r}), sandbox.__file__
        assert "build_model" in prompts.render("contract", allowed_imports="torch")
        assert len(prompts.names()) >= 8
        from llmnas.cli import main
        sys.exit(main(["eval", "model.py", "--data", "digits", "--max-samples", "300", "--steps", "20"]))
    """)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok  val"), result.stdout
