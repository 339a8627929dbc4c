"""``mnn-stress run``: validate, run (or resume) and summarise; the live view or progress
lines meanwhile. Registered by ``stress.cli.main``."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console

from stress import injected_bug
from stress.cli.base import Command, traceback_goes_to
from stress.cli.common import command, console, errors, scenario_files
from stress.cli.narrate import Narrator
from stress.errors import StressError
from stress.exit_codes import ExitCode
from stress.records.states import RunStatus, VariantStatus

if TYPE_CHECKING:
    from stress.analysis.summary_model import RunSummary


@click.command(cls=Command)
@click.argument("scenarios", nargs=-1)
@click.option(
    "--resume",
    "resume_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="go on with an interrupted or killed run in RUN_DIR (same run id, same scenarios "
    "and budget; finished variants are not rerun)",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="run directory to create (default: results/<run-id>/)",
)
@click.option(
    "--workers", type=click.IntRange(min=1), help="worker processes at once (default: CPU count)"
)
@click.option(
    "--duration",
    help="total time for the whole run, shared by all variants "
    "(e.g. 90s, 10m); overrides the scenarios' budgets",
)
@click.option(
    "--iterations",
    type=click.IntRange(min=1),
    help="iterations per variant; overrides the scenarios' budgets",
)
@click.option(
    "--reference/--no-reference",
    default=True,
    show_default=True,
    help="first run each scenario's model once, clean and alone, as the reference that "
    "outputs are graded against",
)
@click.option(
    "--adaptive/--no-adaptive",
    default=True,
    show_default=True,
    help="with a time budget: a first fair pass, then the rest of the time to the variants "
    "whose failure rate is still uncertain (a scenario's `adaptive: false` opts out)",
)
@click.option(
    "--max-disk",
    "max_disk",
    callback=lambda ctx, param, value: _size(value, param),
    help="disk the run directory may use (e.g. 500M, 20G): nearing it, output values stop "
    "being stored; at it, the run stops cleanly",
)
@click.option(
    "--progress-every",
    default="10s",
    show_default=True,
    help="how often the progress line is written to run.log (and to stderr when it is not a "
    "terminal; a terminal gets a live view)",
)
@click.option(
    "--ray",
    "ray_address",
    metavar="ADDRESS",
    help="spread the variants over the nodes of a Ray cluster: HOST:PORT of its head, `auto` "
    "on one of its nodes, or `local` for a cluster of this machine alone (loopback only); "
    "--workers is then per node (default: each node's CPUs). Needs mnn-stress[ray]",
)
@click.option(
    "--fail-on-findings",
    is_flag=True,
    help="exit 1 when any variant has a finding (as `report` does): for cron and CI",
)
def run(
    scenarios: tuple[str, ...],
    resume_dir: Path | None,
    out: Path | None,
    workers: int | None,
    duration: str | None,
    iterations: int | None,
    reference: bool,
    adaptive: bool,
    max_disk: int | None,
    progress_every: str,
    ray_address: str | None,
    fail_on_findings: bool,
) -> None:
    """Run scenario files (or folders of them) and print the per-variant summary."""
    from stress.analysis.report import has_findings
    from stress.coordinator.plan import Budget
    from stress.coordinator.runner import RunHooks, execute
    from stress.scenario import parse_duration

    if duration is not None and iterations:
        raise click.UsageError("give --duration or --iterations, not both")
    if resume_dir is not None and (scenarios or out or duration is not None or iterations):
        raise click.UsageError(
            "--resume goes on with the run's own scenarios, directory and budget: give only "
            "--resume RUN_DIR (and --workers, --max-disk)"
        )
    if resume_dir is None and not scenarios:
        raise click.UsageError("give scenario files (or folders), or --resume RUN_DIR")
    if ray_address is not None and max_disk is not None:
        raise click.UsageError("--max-disk does not work with --ray yet: leave one out")
    _check_cluster(ray_address, resume_dir)
    try:
        seconds = None if duration is None else parse_duration(duration)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--duration") from exc
    try:
        every_s = parse_duration(progress_every, min_s=1.0)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--progress-every") from exc
    narrator = Narrator(errors, errors.is_terminal, every_s, max_disk)
    hooks = RunHooks(
        injected_bug.before("run-start", _started(narrator)),
        narrator.changed,
        injected_bug.before("run-loop", narrator.tick),
        narrator.referenced,
        narrator.note,
    )
    try:
        if resume_dir is not None:
            from stress.coordinator.resume import resume

            result = resume(resume_dir, workers, hooks, max_disk)
        else:
            files = scenario_files(scenarios)
            budget = Budget(iterations, seconds)
            result = execute(
                files, out, workers, budget, hooks, reference, max_disk, adaptive, ray_address
            )
        narrator.end_view()
        summary = _summarise(result.run_dir, narrator)
    finally:
        narrator.close()
    console.print(f"run directory: {result.run_dir}", highlight=False)
    if result.status is RunStatus.INTERRUPTED:
        console.print("[yellow]the run was interrupted; everything recorded so far is kept[/]")
        console.print(f"to go on with it: {command('run', '--resume', result.run_dir)}")
    elif result.status is RunStatus.FAILED:
        reason = result.reason
        if any(state.status is VariantStatus.FAILED for state in result.states):
            reason = f"{reason}; {_worker_tracebacks(result.run_dir)}"
        click.echo(click.style("error: ", fg="red", bold=True) + f"{reason}", err=True)
    else:
        if summary is not None:
            print_next_steps(summary, result.run_dir)
        if fail_on_findings and (summary is None or has_findings(summary)):
            sys.exit(ExitCode.FINDINGS)
    sys.exit(result.exit_code)


def print_next_steps(summary: RunSummary, run_dir: Path) -> None:
    """What to type next: the report of this run, and ``repro`` for its worst finding that the
    script can recreate (one it cannot, ``repro`` refuses to run)."""
    from stress.records.manifest import read_manifest
    from stress.repro.make import not_recreated

    try:
        params = {vid: entry.params for vid, entry in read_manifest(run_dir).variants.items()}
    except StressError:  # a manifest that cannot be read: no variant is known to be recreated
        params = {}
    findings = [
        v
        for v in summary.variants
        if v.verdict.reproducible
        and v.variant_id in params
        and not not_recreated(params[v.variant_id])
    ]
    lines = [f"{command('report', run_dir)}   (findings, rates, attribution; --html PAGE)"]
    if findings:
        worst = min(findings, key=lambda v: v.verdict.severity)
        lines.append(
            f"{command('repro', run_dir, worst.variant_id)}   "
            f"(a script that recreates {worst.verdict} {worst.scenario} {worst.label})"
        )
    console.print("next: " + "\n      ".join(lines), highlight=False)


def _started(narrator: Narrator) -> Callable[[Path, list], None]:
    """The narrator hears of the start; a bug from then on leaves its traceback in the run."""

    def started(run_dir: Path, states: list) -> None:
        traceback_goes_to(run_dir)
        narrator.started(run_dir, states)

    return started


def _worker_tracebacks(run_dir: Path) -> str:
    """The stacks of the workers' harness errors (bugs of ours, recorded as 'harness' events)
    gathered in one file in the run directory: where they are."""
    import pyarrow.compute as pc

    from stress import bug_report
    from stress.analysis.dataset import events_table
    from stress.records.events import EventKind

    harness = pc.field("kind") == EventKind.HARNESS.value
    events = events_table(run_dir, columns=["variant_id", "message", "stack"], filter=harness)
    text = "\n\n".join(
        f"variant {e['variant_id']}: {e['message']}\n{e['stack'] or '(no stack)'}"
        for e in events.to_pylist()
    )
    path = bug_report.write_text(text, "run", run_dir)
    if path is None:
        click.echo(text, err=True)
        return "their tracebacks are printed above"
    return f"their tracebacks are in {path}"


def _check_cluster(address: str | None, resume_dir: Path | None) -> None:
    """The Ray cluster of ``--ray``, checked before anything runs; ``local`` runs this command
    again inside a network namespace of its own first (loopback only)."""
    if address is None:
        return
    from stress.coordinator.cluster import connect

    if resume_dir is not None:
        raise click.UsageError("--resume goes on with a run on this machine: leave out --ray")
    connect.check_address(address)
    connect.check_installed()
    if address == connect.LOCAL:
        connect.enter_private_network(sys.argv[1:])


def _size(value: str | None, param: click.Parameter) -> int | None:
    from stress.records.diskbudget import parse_size

    try:
        return None if value is None else parse_size(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param=param) from exc


def _summarise(run_dir: Path, narrator: Narrator) -> RunSummary | None:
    """The summary on the terminal, and in the run's log (None: it could not be made)."""
    from stress.analysis.summary import summarize
    from stress.analysis.table import render_summary

    try:
        summary = summarize(run_dir)
    except StressError as exc:  # the manifest itself could not be written (full disk)
        narrator.say(f"no summary: {exc.render()}")
        return None
    plain = Console(file=io.StringIO(), width=150, color_system=None, soft_wrap=True)
    render_summary(summary, plain)
    if console.is_terminal or console.color_system:
        render_summary(summary, console)
    else:  # a pipe or a file gets what the log gets: laid out once
        console.out(plain.file.getvalue(), end="", highlight=False)
    narrator.write_log(plain.file.getvalue())
    return summary
