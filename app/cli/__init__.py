"""Command-line tools: `python -m app.cli.keys` (API keys) and `python -m app.cli.eval` (retrieval
evaluation against a running API)."""
