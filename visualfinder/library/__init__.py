"""The facade: `Library`, the one object the CLI, the app, the watcher and the HTTP API use, and
`open_library`, which builds it from settings."""
