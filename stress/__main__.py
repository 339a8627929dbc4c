"""``python -m stress`` runs the command-line interface."""

from stress.cli import main

main()
