"""llmnas: LLM-guided neural architecture search with a hard sandbox and honest scoring."""

__version__ = "0.1.0"
