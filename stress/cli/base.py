"""What every command shares: its exit statuses at the end of its ``--help`` (from
``stress.exit_codes``), and the top that turns whatever a command raises into one line and
a status a cron job can trust. Used by ``stress.cli.main`` and the modules it registers."""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
import rich.console

from stress import bug_report, injected_bug
from stress.errors import MachineRefused, StressError
from stress.exit_codes import ExitCode, Meaning, general, meanings

# ctx.meta key (shared by every context of one invocation): the run directory a command works
# in, where a bug's traceback is written
_RUN_DIR = "mnn_stress.run_dir"
_COMMAND = "mnn_stress.command"  # ctx.meta: the command's full name (``envs prepare``)
# the parameters that name a command's run directory
_RUN_DIR_PARAMS = ("run_dir", "resume_dir")


def traceback_goes_to(run_dir: Path) -> None:
    """A bug from here on writes its traceback into ``run_dir`` (``run``, once it exists)."""
    click.get_current_context().meta[_RUN_DIR] = run_dir


def reopen_closed_streams() -> None:
    """A stdout or stderr the caller closed (``>&-``: Python makes it None) is /dev/null from
    here on: no writes to None, and never a run's file that happens to get descriptor 1 or 2
    (a child process would write into it)."""
    for fd, name in ((1, "stdout"), (2, "stderr")):
        if getattr(sys, name) is not None:
            continue
        try:
            os.fstat(fd)
        except OSError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            if devnull != fd:
                os.dup2(devnull, fd)
                os.close(devnull)
        setattr(sys, name, open(fd, "w", closefd=False))  # noqa: SIM115 (for the process)


class Command(click.Command):
    """A command whose ``--help`` ends with what each exit status means for it."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        _write_statuses(formatter, meanings(_full_name(ctx)))

    def invoke(self, ctx: click.Context) -> Any:
        ctx.meta[_COMMAND] = _full_name(ctx)
        for name in _RUN_DIR_PARAMS:
            if ctx.params.get(name) is not None:
                traceback_goes_to(Path(ctx.params[name]))
        injected_bug.raise_if_asked("command")
        return super().invoke(ctx)


class Group(click.Group):
    """A group of commands: each made with ``@group.command()`` documents its statuses."""

    command_class = Command


class Top(Group):
    """The ``mnn-stress`` group: the one place every exception of every command ends."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        _write_statuses(formatter, general(), "(each command's own: mnn-stress COMMAND --help)")

    def invoke(self, ctx: click.Context) -> Any:
        _escape_what_cannot_be_encoded()
        try:
            try:
                result = super().invoke(ctx)
            except SystemExit:
                sys.stdout.flush()  # a closed pipe shows here, not once the status is set
                raise
            sys.stdout.flush()
            return result
        except StressError as exc:
            _refused(exc)
        except KeyboardInterrupt:  # outside a run (a run handles its own signals)
            _interrupted()
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise  # click's own: usage errors (2), --help and --version (0)
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                _reader_gone()
            if exc.errno not in MachineRefused.ERRNOS:  # ENOENT of a file of ours: our bug
                _bug(ctx, exc)
            _refused(MachineRefused.of(exc))
        except MemoryError as exc:
            _refused(MachineRefused.of(exc))
        except Exception as exc:
            if _query_interrupted(exc):
                _interrupted()
            _bug(ctx, exc)


class Console(rich.console.Console):
    """rich's console, exiting 141 instead of rich's 1 (a finding, to cron) when the reader
    of its output is gone."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        _reader_gone()


def _escape_what_cannot_be_encoded() -> None:
    """A path or name the terminal's encoding cannot show (``é`` under ``LANG=C`` or
    ``PYTHONIOENCODING=ascii``) is written as ``\\xe9``, not a UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def _refused(exc: StressError) -> NoReturn:
    _tell(click.style("error: ", fg="red", bold=True) + exc.render())
    sys.exit(exc.exit_code)


def _interrupted() -> NoReturn:
    _tell("interrupted; no run was started or changed")
    sys.exit(ExitCode.INTERRUPTED)


def _query_interrupted(exc: Exception) -> bool:
    """Ctrl-C during a DuckDB query: DuckDB turns it into its own exception (a RuntimeError
    "Query interrupted" in 1.x), not a KeyboardInterrupt."""
    return "Interrupt" in type(exc).__name__ or str(exc) == "Query interrupted"


class SideConsole(rich.console.Console):
    """rich's console for what a command says on the side (stderr: a run's progress, notes):
    when nobody reads it any more (``2>&1 | tee`` whose terminal closed) it falls silent and
    the command goes on. The result on stdout alone decides 141."""

    def on_broken_pipe(self) -> None:
        self.gone()

    def gone(self) -> None:
        """Nobody reads stderr any more (EPIPE; EIO from a terminal that hung up): say
        nothing more, and let later one-line errors go nowhere rather than raise."""
        self.quiet = True
        with contextlib.suppress(OSError, ValueError):  # ValueError: stderr has no file
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stderr.fileno())


def _tell(text: str) -> None:
    """One line on stderr, if anyone can still read it."""
    with contextlib.suppress(OSError):
        click.echo(text, err=True)


def _bug(ctx: click.Context, exc: Exception) -> NoReturn:
    command = ctx.meta.get(_COMMAND) or ctx.invoked_subcommand or "mnn-stress"
    path = bug_report.record(exc, command, ctx.meta.get(_RUN_DIR))
    _tell(click.style("error: ", fg="red", bold=True) + bug_report.one_line(exc, path))
    sys.exit(ExitCode.BUG)


def _reader_gone() -> NoReturn:
    """Whoever read stdout stopped (``| head``): nothing more to say, and no error at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(ExitCode.BROKEN_PIPE)


def _full_name(ctx: click.Context) -> str:
    """``envs prepare`` for ``mnn-stress envs prepare``: the names below the top group."""
    names = []
    while ctx.parent is not None:
        names.append(ctx.command.name or "")
        ctx = ctx.parent
    return " ".join(reversed(names))


def _write_statuses(
    formatter: click.HelpFormatter, statuses: tuple[Meaning, ...], note: str = ""
) -> None:
    formatter.write_paragraph()
    with formatter.section("Exit status" + (f" {note}" if note else "")):
        formatter.write_dl([(str(int(code)), text) for code, text in statuses])
