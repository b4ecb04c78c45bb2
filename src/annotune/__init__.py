"""annotune: turn your organisation's knowledge into a fine-tuned open LLM."""

__version__ = "0.1.0"
