"""The operator surface: the HTTP API, live events, the dashboard and the command-line client."""
