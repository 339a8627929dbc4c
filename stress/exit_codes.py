"""Every exit status of every command, defined once. The CLI exits with these; each command's
``--help`` ends with its own (``meanings``), and the docs' table (``docs/reference/exit_codes.md``)
is ``markdown_table()`` (a test keeps the two the same). Worker processes have statuses of their own
(``stress.contract``): another domain, never seen by a shell."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FINDINGS = 1  # something for a human to look at (what, depends on the command)
    NO_CHANGE = 1  # bisect: no version changed the outcome (an alias of FINDINGS)
    USER_ERROR = 2  # one message naming the file, key and fix (click's usage errors: 2 too)
    RUN_FAILED = 3  # the run could not go on: the machine's doing, not a bug
    # sysexits.h EX_SOFTWARE, "an internal software error": outside 1-3, which mean something
    # else, and below 126-255, which shells use for "cannot execute" and "killed by signal"
    BUG = 70
    INTERRUPTED = 130  # 128 + SIGINT: what a shell reports for Ctrl-C
    BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader of the output went away (`| head`)


Meaning = tuple[ExitCode, str]

_COMMON: tuple[Meaning, ...] = (
    (
        ExitCode.USER_ERROR,
        "a user error, as one message: bad arguments, a file or run directory that cannot "
        "be used, or the machine refused (permissions, a full disk, memory)",
    ),
    (
        ExitCode.BUG,
        "a bug in mnn-stress (never a finding): one line says where the full traceback was written",
    ),
    (ExitCode.INTERRUPTED, "interrupted by Ctrl-C"),
    (ExitCode.BROKEN_PIPE, "the program reading the output stopped reading (`| head`)"),
)

_OWN: dict[str, tuple[Meaning, ...]] = {
    "validate": (
        (ExitCode.OK, "every file is valid"),
        (
            ExitCode.USER_ERROR,
            "a file is not valid: the message names the file, key and line; or the machine "
            "refused (permissions, a full disk, memory)",
        ),
    ),
    "run": (
        (
            ExitCode.OK,
            "the run completed (with --resume: went on to its end); findings about MNN do "
            "not change this, read the verdicts",
        ),
        (
            ExitCode.FINDINGS,
            "with --fail-on-findings: the run completed and a variant has a finding (as "
            "`report` exits 1)",
        ),
        (
            ExitCode.USER_ERROR,
            "refused before anything ran: a bad scenario, a run directory that cannot be used "
            "(--out, or --resume of a complete run), `ulimit -f` too small, a --duration too "
            "short; or the machine refused the summary at the end (stdout on a full disk): the "
            "run itself is kept",
        ),
        (
            ExitCode.RUN_FAILED,
            "the run failed: results could not be written (full disk, file-size limit), "
            "workers could not be started, a model file changed during the run, or no "
            "iteration completed",
        ),
        (
            ExitCode.BUG,
            "mnn-stress's own code failed, in the coordinator or in a worker (the variant "
            "`failed`, HARNESS_ERROR): the manifest says so, one line says where the "
            "traceback is",
        ),
        (
            ExitCode.INTERRUPTED,
            "stopped by Ctrl-C, SIGTERM or SIGHUP: what was recorded is kept (--resume goes on)",
        ),
    ),
    "summary": ((ExitCode.OK, "the table was printed, whatever the run found"),),
    "report": (
        (ExitCode.OK, "only exact or close outcomes"),
        (
            ExitCode.FINDINGS,
            "anything else: a failing grade, a death, a refusal, a harness error, a changed "
            "view, outputs that differ run to run, or a reference ONNX Runtime disagrees with",
        ),
    ),
    "compare": (
        (ExitCode.OK, "B is not worse than A"),
        (
            ExitCode.FINDINGS,
            "B is worse: a failure rate beyond A's interval, a verdict turned into a finding, "
            "or clean references that disagree",
        ),
    ),
    "repro": (
        (
            ExitCode.OK,
            "the script was written (and run --runs times): how often it reproduced is "
            "printed, not told by the status",
        ),
        (
            ExitCode.USER_ERROR,
            "no such variant in the run; or the script cannot recreate some of the variant's "
            "factors (named; it is written, and --anyway runs it all the same)",
        ),
    ),
    "calibrate": ((ExitCode.OK, "the tolerances were printed"),),
    "models": ((ExitCode.OK, "the built-in models were listed"),),
    "schema": ((ExitCode.OK, "the JSON Schema was printed"),),
    "envs prepare": (
        (ExitCode.OK, "every environment asked for is ready"),
        (
            ExitCode.USER_ERROR,
            "an environment could not be made, or `import MNN` fails in it; or the machine "
            "refused (permissions, a full disk, memory)",
        ),
    ),
    "envs list": ((ExitCode.OK, "the environments were listed"),),
    "bisect": (
        (ExitCode.OK, "the outcome changed: the first version where it did is printed"),
        (ExitCode.NO_CHANGE, "no version tested changed the outcome"),
        (ExitCode.RUN_FAILED, "a version's run failed (as `run` exits 3)"),
        (ExitCode.INTERRUPTED, "interrupted by Ctrl-C: the runs so far are kept"),
    ),
}

COMMANDS = tuple(_OWN)


def meanings(command: str) -> tuple[Meaning, ...]:
    """What each status means for ``command`` (``envs prepare``: a subcommand's full name):
    its own, then the ones every command shares, in numeric order."""
    own = _OWN[command]
    mine = {code for code, _ in own}
    return tuple(sorted(own + tuple(m for m in _COMMON if m[0] not in mine), key=_order))


def general() -> tuple[Meaning, ...]:
    """The statuses of all commands together, for ``mnn-stress --help``."""
    every = (
        (ExitCode.OK, "success (see each command)"),
        (
            ExitCode.FINDINGS,
            "something to look at: findings (report, run --fail-on-findings), B worse "
            "(compare), no change (bisect)",
        ),
        (ExitCode.RUN_FAILED, "a run failed: results could not be written, workers not started"),
        *_COMMON,
    )
    return tuple(sorted(every, key=_order))


def _order(meaning: Meaning) -> int:
    return int(meaning[0])


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # a bare | would end the table's cell


def markdown_table() -> str:
    """The docs' table: each command's own statuses, then those every command shares."""
    rows = ["| command | exit status: meaning |", "|---|---|"]
    for command, own in (*_OWN.items(), ("every command", _COMMON)):
        name = command if command == "every command" else f"`{command}`"
        cells = "<br>".join(f"**{int(code)}** {_cell(text)}" for code, text in own)
        rows.append(f"| {name} | {cells} |")
    return "\n".join(rows) + "\n"
