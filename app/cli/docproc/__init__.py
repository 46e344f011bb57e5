"""`docproc`, the command line of the API (the console script; `python -m app.cli.docproc` too)."""

from app.cli.docproc.commands import main

__all__ = ["main"]
