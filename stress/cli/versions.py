"""Commands about other MNN releases: ``envs prepare|list`` (cached environments for the
``mnn_version`` factor) and ``bisect`` (one variant across releases). Registered by
``stress.cli.main``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from stress.cli.base import Command, Group, traceback_goes_to
from stress.cli.common import console, errors, scenario_files
from stress.exit_codes import ExitCode


@click.group("envs", cls=Group)
def envs_group() -> None:
    """Cached virtual environments of other MNN releases, for the mnn_version factor."""


def _say(line: str) -> None:
    errors.print(line, style="dim", highlight=False)


@envs_group.command("prepare")
@click.argument("scenarios", nargs=-1)
@click.option(
    "--version", "versions", multiple=True, help="also this MNN release, e.g. 3.4.1 (repeatable)"
)
def envs_prepare(scenarios: tuple[str, ...], versions: tuple[str, ...]) -> None:
    """Create (or check) every environment the scenarios' mnn_version values need, ahead of a
    night's run; an existing one is probed and rebuilt if broken."""
    from stress.errors import EnvError
    from stress.versions import envs
    from stress.versions.releases import is_release
    from stress.versions.wanted import needed_by

    wanted = needed_by(scenario_files(scenarios)) if scenarios or not versions else {}
    for version in versions:
        if not is_release(version):  # before they are sorted by release number
            raise EnvError(f"{version!r} is not a release number such as 3.4.1", key="--version")
        if envs.needs_env(version):
            wanted.setdefault(version, []).append("--version")
    if not wanted:
        console.print(f"nothing to prepare: only the installed MNN ({envs.mnn_version()})")
        return
    for version in sorted(wanted, key=envs.version_key):
        info = envs.prepare(version, _say)
        console.print(
            f"ok  MNN {version}: {info.interpreter} ({info.size_bytes / 2**20:.0f} MiB)",
            highlight=False,
        )
    total = sum(e.size_bytes for e in envs.list_envs())
    console.print(f"environments in {envs.envs_root()}: {total / 2**20:.0f} MiB", highlight=False)


@envs_group.command("list")
def envs_list() -> None:
    """The environments made so far, with their versions and sizes."""
    from stress.versions import envs

    found = envs.list_envs()
    console.print(
        f"{envs.envs_root()} (installed MNN: {envs.mnn_version()}, no environment needed)",
        highlight=False,
    )
    for env in found:
        console.print(
            f"  MNN {env.mnn:<7} python {env.python} numpy {env.numpy}  "
            f"{env.size_bytes / 2**20:5.0f} MiB  {env.created}  {env.path}",
            highlight=False,
        )
    total = sum(e.size_bytes for e in found)
    console.print(f"{len(found)} environments, {total / 2**20:.0f} MiB", highlight=False)


@click.command(cls=Command)
@click.argument("scenario", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--variant", "variant_id", required=True, help="the variant's id (validate -v)")
@click.option(
    "--versions",
    "spec",
    help="A..B (the releases between) or A,B,C; default: every release pip's index has for "
    "this Python",
)
@click.option(
    "--iterations",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="per version: an outcome not seen in n runs has a rate below 3/n",
)
@click.option("--every", is_flag=True, help="test every version instead of a binary search")
@click.option(
    "--outputs",
    is_flag=True,
    help="a change of the most frequent output (its digest) is a change of outcome too",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="folder for one run per version and bisect.json (default: results/bisect-<id>/)",
)
def bisect(
    scenario: Path,
    variant_id: str,
    spec: str | None,
    iterations: int,
    every: bool,
    outputs: bool,
    out: Path | None,
) -> None:
    """Run one variant across released MNN versions and print the first version where its
    outcome changed."""
    from stress.coordinator.runner import new_run_id
    from stress.versions import bisect as bisecting

    target = bisecting.find_target(scenario, variant_id)
    released, source = bisecting.released_versions()
    versions = bisecting.parse_versions(spec, released)
    folder = out or Path("results") / f"bisect-{new_run_id()}"
    traceback_goes_to(folder)  # once it exists
    _say(
        f"{len(versions)} versions {versions[0]}..{versions[-1]} (releases: {source}); runs in "
        f"{folder}\n{bisecting.bound_note(iterations)}"
    )

    def measure(version: str):
        return bisecting.measure_version(target, version, iterations, folder, _say)

    try:
        key = bisecting.by_output if outputs else bisecting.by_outcome
        found = bisecting.search(versions, measure, every, key)
    except KeyboardInterrupt:
        click.echo(f"interrupted; the runs so far are in {folder}", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    bisecting.write_result(
        found,
        folder / "bisect.json",
        {"scenario": str(scenario), "variant_id": variant_id, "iterations": iterations},
    )
    bisecting.render(found, target, console)
    console.print(f"runs and bisect.json: {folder}", highlight=False)
    sys.exit(ExitCode.OK if found.changes() else ExitCode.NO_CHANGE)
