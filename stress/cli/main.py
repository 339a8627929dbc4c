"""Command-line interface (click). Thin: parse, call, print; user errors become one message."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from stress.cli.base import Top
from stress.cli.common import console, errors, scenario_files
from stress.errors import StressError
from stress.exit_codes import ExitCode

if TYPE_CHECKING:
    from stress.scenario import Scenario


@click.group(cls=Top, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mnn-stress")
def main() -> None:
    """Stress-test MNN's Python APIs: scenarios -> variants -> isolated workers -> Parquet."""


@main.command()
@click.argument("scenarios", nargs=-1, required=True)
@click.option(
    "--variants",
    "show_variants",
    is_flag=True,
    help="also list each variant's id and factor values",
)
def validate(scenarios: tuple[str, ...], show_variants: bool) -> None:
    """Check scenario files without running them."""
    from stress.coordinator.runner import load_all
    from stress.factors import changed
    from stress.scenario.variants import expand

    for scenario in load_all(scenario_files(scenarios)):
        variants = expand(scenario)
        spec = scenario.spec
        counts = _variant_counts(spec) if show_variants else spec.strategy
        console.print(
            f"ok  {scenario.path}: scenario {spec.name!r}, model {spec.model!r}, "
            f"{len(variants)} variants" + ("" if counts == "full" else f" ({counts})"),
            highlight=False,
            soft_wrap=True,
        )
        for variant in variants if show_variants else []:
            params = " ".join(f"{k}={v}" for k, v in changed(variant.params).items())
            params = params or "(all defaults)"
            console.print(f"    {variant.variant_id}  {params}", highlight=False, soft_wrap=True)


def _variant_counts(spec: Scenario) -> str:
    """Variants under each strategy, and the tuples the chosen covering one cannot have."""
    from stress.scenario.matrix import covering, size, strategy_counts

    counts = strategy_counts(spec)
    full = counts.pop("full")
    total = f"{full:,}" if full is not None else f"{size(spec):,} before exclusions"
    shown = [f"full product: {total}"]
    shown += [f"{s}: {'over the limits' if n is None else f'{n:,}'}" for s, n in counts.items()]
    unreachable = covering(spec).unreachable if spec.strategy != "full" else 0
    if unreachable:
        what = ("pair" if spec.strategy == "pairwise" else "triple") + "s" * (unreachable > 1)
        shown[-1] += f"; {unreachable:,} {what} of values in no allowed combination"
    return ", ".join(shown)


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="machine-readable counts per variant")
def summary(run_dir: Path, as_json: bool) -> None:
    """Per-variant table of a run (works on interrupted runs too)."""
    from stress.analysis.summary import summarize
    from stress.analysis.table import render_summary

    result = summarize(run_dir)
    if as_json:
        click.echo(result.to_json())
    else:
        render_summary(result, console)


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="also write a self-contained HTML report with plots to this file",
)
@click.option("--json", "as_json", is_flag=True, help="the whole analysis as JSON")
def report(run_dir: Path, html_path: Path | None, as_json: bool) -> None:
    """The morning view of a run: outcomes with rates, attribution, crash signatures, drift;
    its exit status tells cron whether anything other than exact or close outcomes occurred."""
    from stress.analysis.report import has_findings, render_report
    from stress.analysis.summary import summarize

    result = summarize(run_dir)
    if as_json:
        click.echo(result.to_json())
    else:
        render_report(result, console)
    if html_path is not None:
        from stress.analysis.html import write_html

        try:
            write_html(result, run_dir, html_path)
        except OSError as exc:
            raise StressError(
                f"cannot write the HTML report to {html_path}: {exc.strerror or exc}",
                key="--html",
                fix="give a file in a folder that exists and can be written",
            ) from exc
        errors.print(f"HTML report: {html_path}", highlight=False)
    if has_findings(result):
        sys.exit(ExitCode.FINDINGS)


@main.command()
@click.argument("run_a", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("run_b", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="the comparison as JSON")
def compare(run_a: Path, run_b: Path, as_json: bool) -> None:
    """Two runs variant by variant (matched by id): failure rates with intervals, verdicts,
    latency ratio, and whether the clean references agree."""
    from stress.analysis.compare import compare_runs, regressed, render_comparison
    from stress.analysis.summary import summarize

    comparison = compare_runs(run_a, run_b, summarize(run_a), summarize(run_b))
    if as_json:
        click.echo(json.dumps(comparison, indent=2))
    else:
        render_comparison(comparison, console)
    if regressed(comparison):
        sys.exit(ExitCode.FINDINGS)


def _timeout(value: str, param: click.Parameter) -> float:
    from stress.scenario.durations import parse_timeout

    try:
        return parse_timeout(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param=param) from exc


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("variant_id")
@click.option(
    "--runs",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="run the script this many times, each in a fresh process",
)
@click.option(
    "--iterations",
    type=click.IntRange(min=1),
    help="iterations per thread in the script (default: the variant's, at most 1000)",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="where to write the script (default: RUN_DIR/repro/VARIANT_ID.py)",
)
@click.option(
    "--timeout",
    default="300s",
    show_default=True,
    callback=lambda ctx, param, value: _timeout(value, param),
    help="how long one run of the script may take (e.g. 90s, 10m), as other durations",
)
@click.option(
    "--anyway",
    is_flag=True,
    help="run the script even where it cannot recreate some of the variant's factors",
)
def repro(
    run_dir: Path,
    variant_id: str,
    runs: int,
    iterations: int | None,
    out: Path | None,
    timeout: float,
    anyway: bool,
) -> None:
    """Write a standalone script (MNN and numpy only) that recreates a variant and checks for
    what the run saw; run it K times in fresh processes and say how often it reproduced."""
    from stress.analysis.verdicts import Verdict
    from stress.factors import shown
    from stress.repro.make import UNSEEN_BY_THE_SCRIPT, run_script, write_script

    script = out or run_dir / "repro" / f"{variant_id}.py"
    settings = write_script(run_dir, variant_id, script, iterations)
    console.print(f"script: {script} (the model beside it: move them together)", highlight=False)
    missing = " ".join(f"{k}={shown(v)}" for k, v in settings["not_recreated"].items())
    if missing and runs and not anyway:
        raise StressError(
            f"the script cannot recreate {missing}, so running it would say nothing of what "
            "the variant saw (it is written)",
            key=variant_id,
            fix="reproduce it with `mnn-stress run` (the variant's scenario), or give "
            "--anyway to run the script all the same",
        )
    if missing:
        console.print(f"not recreated by the script: {missing}", style="yellow", highlight=False)
    if "leak" in settings["looking_for"] and settings["iterations"] < settings["iterations_in_run"]:
        console.print(
            f"a leak shows over iterations: the run saw it over {settings['iterations_in_run']:,} "
            f"per thread, the script runs {settings['iterations']:,}",
            style="yellow",
            highlight=False,
        )
    verdict = Verdict(settings["observed"]["verdict"])
    if verdict.finding and not verdict.reproducible and runs and not anyway:
        raise StressError(
            f"the script cannot look for {verdict}: {UNSEEN_BY_THE_SCRIPT[verdict]} (it is "
            "written)",
            key=variant_id,
            fix="give --anyway to run the script all the same",
        )
    if runs == 0:
        return
    looking_for = settings["looking_for"]
    result = run_script(script, runs, looking_for, timeout)
    console.print(
        f"reproduced in {result.reproduced} of {runs} fresh runs "
        f"(looked for {', '.join(looking_for)}): {', '.join(result.outcomes)}",
        highlight=False,
    )


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--margin",
    type=click.FloatRange(min=1.0),
    default=2.0,
    show_default=True,
    help="the tolerance is this many times the widest difference seen",
)
@click.option("--json", "as_json", is_flag=True, help="what was measured, as JSON")
def calibrate(run_dir: Path, margin: float, as_json: bool) -> None:
    """Tolerances from a clean baseline run (say, num_thread and precision varied with
    nothing wrong): per scenario output, the widest difference from the reference, times a
    margin, as a `tolerance:` block to paste into the scenario."""
    from stress.analysis.calibrate import as_yaml
    from stress.analysis.calibrate import calibrate as measure

    found = measure(run_dir, margin)
    click.echo(json.dumps(found, indent=2) if as_json else as_yaml(found), nl=not as_json)


@main.command()
def models() -> None:
    """List the built-in models with their inputs and outputs."""
    from stress.models.builtin import BUILTINS
    from stress.models.resolve import resolve_model

    for name, builtin in BUILTINS.items():
        info = resolve_model(name, Path.cwd())
        console.print(f"[bold]{name}[/]: {builtin.summary}", highlight=False)
        for label, tensors in (("in ", info.inputs), ("out", info.outputs)):
            for t in tensors:
                console.print(f"    {label} {t.name} {list(t.shape)} {t.dtype}", highlight=False)


@main.command()
@click.option(
    "--summary",
    "of_summary",
    is_flag=True,
    help="the JSON Schema of `summary --json` and `report --json` instead",
)
def schema(of_summary: bool) -> None:
    """Print the JSON Schema of scenario files (for editor completion), or with --summary
    that of a run's summary as `summary --json` prints it."""
    if of_summary:
        from stress.analysis.summary_model import summary_schema

        click.echo(json.dumps(summary_schema(), indent=2))
        return
    from stress.scenario import json_schema

    click.echo(json.dumps(json_schema(), indent=2))


def _other_commands() -> None:
    """``run`` lives in ``stress.cli.run``; ``envs`` and ``bisect`` in ``stress.cli.versions``."""
    from stress.cli.run import run
    from stress.cli.versions import bisect, envs_group

    main.add_command(run)
    main.add_command(envs_group)
    main.add_command(bisect)


_other_commands()
