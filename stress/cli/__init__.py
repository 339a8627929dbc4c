"""Command-line interface: thin commands and what a run says while it runs."""
