"""``python -m autovision`` runs the CLI."""

from autovision.cli import app

app()
