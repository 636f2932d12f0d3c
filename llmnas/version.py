"""The package's version, importable without importing the package's API (llmnas/__init__.py)."""

VERSION = "0.1.0"  # as in pyproject.toml
