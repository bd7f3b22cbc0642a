"""``python -m optout`` runs the command line."""

from optout.cli import run

run()
