"""``python -m stress`` and the ``mnn-stress`` script: the command-line interface."""

from stress.cli.lean import keep_pandas_out


def run() -> None:
    keep_pandas_out()
    from stress.cli.main import main

    main()


if __name__ == "__main__":
    run()
