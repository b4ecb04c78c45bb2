"""The one generation engine: everything that generates (chat, generate, suggest, quickstart, evaluate, serve)
goes through :class:`annotune.generation.engine.Engine`, configured per request by
:class:`annotune.generation.config.GenerationConfig`; :func:`annotune.generation.loading.load_engine` builds one
from any model reference or run folder.

This package's ``__init__`` imports nothing heavy, so the CLI can read the config's fields without loading torch.
"""
