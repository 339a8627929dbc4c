"""What a run says while it runs: to the terminal (stderr) and, with the time, to
``RUN_DIR/run.log``, so an unattended night leaves its story next to its rows. On a terminal
the run's figures are drawn live (``stress.cli.liveview``); the log, and stderr without a
terminal, get them as a plain line every ``every_s`` seconds."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from rich.live import Live

from stress.cli import liveview
from stress.cli.base import SideConsole
from stress.records.diskbudget import disk_usage
from stress.records.manifest_sections import ReferenceEntry
from stress.records.rundir import RunLayout
from stress.records.states import VariantStatus

DISK_EVERY_S = 5.0  # how often the live view measures the run directory


class Narrator:
    """The run's hooks (``coordinator.runner.RunHooks``): each line to ``console`` and the
    log; the live view when ``live``; the plain progress line every ``every_s``."""

    def __init__(
        self,
        console: SideConsole,
        live: bool = False,
        every_s: float = 10.0,
        disk_limit: int | None = None,
    ) -> None:
        self.console = console
        self.log: TextIO | None = None
        self.every_s, self.disk_limit = every_s, disk_limit
        self.live = Live(console=console, auto_refresh=False, transient=True) if live else None
        self.run_dir: Path | None = None
        self.rates = liveview.Rates()
        self.node_rates = liveview.Rates(key=lambda state: state.node)
        self.next_line_s = every_s
        self.disk_used: int | None = None
        self.disk_measured_s = -DISK_EVERY_S

    def say(self, line: str, style: str | None = None) -> None:
        self._draw(lambda: self.console.print(line, highlight=False, style=style, soft_wrap=True))
        self.write_log(_stamped(line))

    def _draw(self, draw: Callable[[], object]) -> None:
        """Write to the terminal; when it is gone (EIO once it hung up, EPIPE) the run goes
        on without it, and the log keeps everything."""
        if self.console.quiet:
            return
        try:
            draw()
        except OSError:
            self.live = None
            self.console.gone()

    def write_log(self, text: str) -> None:
        """Text for the log only (the final summary, already shown on the terminal)."""
        if self.log is not None:
            try:
                self.log.write(text)
                self.log.flush()
            except OSError:
                self.log = None

    def end_view(self) -> None:
        """Take the live view off the terminal (before the summary is printed)."""
        if self.live is not None:
            live, self.live = self.live, None
            self._draw(live.stop)

    def close(self) -> None:
        self.end_view()
        if self.log is not None:
            self.log.close()
            self.log = None

    def started(self, run_dir: Path, states: list[Any]) -> None:
        self.run_dir = run_dir
        try:
            self.log = open(RunLayout(run_dir).run_log, "a", encoding="utf-8")  # noqa: SIM115
        except OSError:
            self.log = None
        budgets = sorted({_budget(s) for s in states})
        left = [s for s in states if not s.status.finished]
        resumed = f"resuming {len(left)} unfinished of " if len(left) < len(states) else ""
        self.say(
            f"run directory: {run_dir} ({resumed}{len(states)} variants, each "
            f"{' or '.join(budgets)})"
        )

    def referenced(self, entries: dict[str, ReferenceEntry]) -> None:
        usable = [name for name, entry in entries.items() if entry.status == "done"]
        failed = ", ".join(name for name in entries if name not in usable)
        self.say(
            f"references: {len(usable)} of {len(entries)} scenarios"
            + (f"; none for {failed} (see RUN_DIR/reference/)" if failed else ""),
            "dim",
        )

    def note(self, line: str) -> None:
        self.say(line, "yellow")

    def changed(self, state: Any) -> None:
        if state.status.finished or state.status is VariantStatus.INTERRUPTED:
            self.say(
                f"  {state.status.value:<11} {state.variant.scenario} {state.variant.label} "
                f"({state.completed} iterations, {state.crashes} deaths)",
                "dim",
            )

    def tick(self, states: list[Any], elapsed: float) -> None:
        """Every second: redraw the live view; every ``every_s``, the plain line."""
        if self.run_dir is not None and elapsed - self.disk_measured_s >= DISK_EVERY_S:
            self.disk_used, self.disk_measured_s = disk_usage(self.run_dir), elapsed
        disk = (self.disk_used, self.disk_limit)
        m = liveview.meters(states, elapsed, self.rates, disk, self.node_rates)
        if self.live is not None:
            live = self.live
            if not live.is_started:
                self._draw(live.start)
            self._draw(lambda: live.update(liveview.table(states, m), refresh=True))
        if elapsed >= self.next_line_s:
            self.next_line_s = elapsed + self.every_s
            line = liveview.plain_line(states, m)
            if self.live is None:
                self.say(line, "dim")
            else:
                self.write_log(_stamped(line))


def _stamped(line: str) -> str:
    return f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {line}\n"


def _budget(state: Any) -> str:
    if state.stop_iteration is not None:
        return f"{state.stop_iteration} iterations"
    return f"{state.duration_s:.3g} s of iterations"
