"""`annotune serve`: tuned runs behind an OpenAI-compatible API and a chat page."""
