"""``python -m kdinterp`` runs the CLI."""

from kdinterp.cli import app

app()
