"""The `visualfinder` command: the parser and entry point (main), shared helpers (common) and the
commands by topic."""
