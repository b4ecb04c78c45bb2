"""Model loading (hub id, local folder, GGUF file, embedded default), chat templates and generation."""

from annotune.models.loading import EMBEDDED_DEFAULT, ModelRef, load_model, load_tokenizer, resolve_model

__all__ = ["EMBEDDED_DEFAULT", "ModelRef", "load_model", "load_tokenizer", "resolve_model"]
