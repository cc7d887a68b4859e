"""Command line: `genzoo ...` (Typer). One module per area; each registers its commands on `app`."""
from ._app import app, main

__all__ = ["app", "main"]
