"""CLI commands registered on the main typer app (see ccfcache.cli)."""

from __future__ import annotations
