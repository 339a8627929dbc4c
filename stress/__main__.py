"""``python -m stress`` runs the command-line interface."""

from stress.cli.main import main

main()
