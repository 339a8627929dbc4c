"""What a run says while it runs: to the terminal (stderr) and, with the time, to
``RUN_DIR/run.log``, so an unattended night leaves its story next to its rows."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console

from stress.states import VariantStatus

RUN_LOG = "run.log"


class Narrator:
    """The run's hooks (``stress.runner.RunHooks``): each line to ``console`` and the log."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.log: TextIO | None = None

    def say(self, line: str, style: str | None = None) -> None:
        self.console.print(line, highlight=False, style=style, soft_wrap=True)
        if self.log is not None:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            try:
                self.log.write(f"{stamp} {line}\n")
                self.log.flush()
            except OSError:  # a full disk: the terminal still hears it
                self.log = None

    def write_log(self, text: str) -> None:
        """Text for the log only (the final summary, already shown on the terminal)."""
        if self.log is not None:
            try:
                self.log.write(text)
                self.log.flush()
            except OSError:
                self.log = None

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
            self.log = None

    def started(self, run_dir: Path, states: list[Any]) -> None:
        try:
            self.log = open(run_dir / RUN_LOG, "a", encoding="utf-8")  # noqa: SIM115
        except OSError:
            self.log = None
        budgets = sorted({_budget(s) for s in states})
        left = [s for s in states if not s.status.finished]
        resumed = f"resuming {len(left)} unfinished of " if len(left) < len(states) else ""
        self.say(
            f"run directory: {run_dir} ({resumed}{len(states)} variants, each "
            f"{' or '.join(budgets)})"
        )

    def referenced(self, entries: dict[str, dict]) -> None:
        usable = [name for name, entry in entries.items() if entry["status"] == "done"]
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
        finished = sum(s.status.finished for s in states)
        running = sum(s.status is VariantStatus.RUNNING for s in states)
        iterations = sum(s.completed for s in states)
        deaths = sum(s.crashes for s in states)
        self.say(
            f"[{elapsed:5.0f}s] variants {finished}/{len(states)} finished, {running} "
            f"running; {iterations:,} iterations; {deaths} worker deaths",
            "dim",
        )


def _budget(state: Any) -> str:
    if state.stop_iteration is not None:
        return f"{state.stop_iteration} iterations"
    return f"{state.duration_s:.3g} s of iterations"
