"""User-facing errors: each carries where the problem is and how to fix it, never a traceback."""

from __future__ import annotations


class StressError(Exception):
    """An error the user can fix; the CLI prints it as one message and exits non-zero."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        key: str | None = None,
        line: int | None = None,
        fix: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.key = key
        self.line = line
        self.fix = fix
        super().__init__(self.render())

    def render(self) -> str:
        where = self.file or ""
        if self.line is not None:
            where += f":{self.line}"
        head = f"{where}: " if where else ""
        key = f"{self.key}: " if self.key else ""
        text = f"{head}{key}{self.message}"
        return f"{text}\n  fix: {self.fix}" if self.fix else text


class ScenarioError(StressError):
    """A scenario file that cannot be parsed or does not validate."""


class ModelError(StressError):
    """A model that cannot be found, built, converted or inspected."""


class RunDirError(StressError):
    """A run directory that cannot be created or read."""
