"""The words of a summary, each defined once: an iteration's grade, and a variant's verdict.

A variant's verdict: one word saying what to look at first, defined once with everything a
renderer needs. The members are in order of severity (what needs a look first); each says
whether it is a finding (``report``'s and ``compare``'s exit status), its terminal style
(``stress.analysis.table``) and its colour class in the HTML report (``stress.analysis.html``).
A Verdict is a ``str``: the summary's JSON holds the word itself."""

from __future__ import annotations

from enum import Enum


class Verdict(str, Enum):
    # (word, is a finding, rich style on the terminal, CSS class in the HTML report)
    HARNESS_ERROR = ("HARNESS_ERROR", True, "bold magenta", "harness")
    QUARANTINED = ("QUARANTINED", True, "bold red", "bad")
    CRASHED = ("CRASHED", True, "red", "bad")
    MEMCHECK = ("MEMCHECK", True, "red", "bad")
    FAILED = ("FAILED", True, "red", "bad")
    VIEW_CHANGED = ("VIEW_CHANGED", True, "yellow", "warn")
    INCONSISTENT = ("INCONSISTENT", True, "yellow", "warn")
    MISMATCH = ("MISMATCH", True, "red", "bad")
    # the variant's outputs match MNN's clean reference, which ONNX Runtime disagrees with
    ORT_MISMATCH = ("ORT_MISMATCH", True, "red", "bad")
    LEAK = ("LEAK", True, "yellow", "warn")  # resident memory grew beyond noise (drift)
    REFUSED = ("REFUSED", True, "cyan", "info")
    # how far a variant got, when it did not finish with all its rows: not findings
    KILLED = ("KILLED", False, "yellow", "other")
    INCOMPLETE = ("INCOMPLETE", False, "yellow", "other")
    INTERRUPTED = ("INTERRUPTED", False, "yellow", "other")
    UNKNOWN = ("UNKNOWN", False, "yellow", "other")
    PENDING = ("PENDING", False, "yellow", "other")
    RUNNING = ("RUNNING", False, "yellow", "other")
    SKIPPED = ("SKIPPED", False, "yellow", "other")
    EMPTY = ("EMPTY", False, "yellow", "other")
    OK = ("ok", False, "green", "ok")

    finding: bool
    style: str
    html_class: str

    def __new__(cls, word: str, finding: bool, style: str, html_class: str) -> Verdict:
        member = str.__new__(cls, word)
        member._value_ = word
        member.finding, member.style, member.html_class = finding, style, html_class
        return member

    def __str__(self) -> str:
        return self.value

    @property
    def severity(self) -> int:
        """Its place in the order above: 0 needs a look first."""
        return _ORDER[self]

    @property
    def reproducible(self) -> bool:
        """Whether ``repro``'s script can look for it: every finding but a bug of ours and a
        disagreement with ONNX Runtime (the script compares with MNN's own clean reference,
        which such a variant matches)."""
        return self.finding and self not in (Verdict.HARNESS_ERROR, Verdict.ORT_MISMATCH)


_ORDER = {verdict: place for place, verdict in enumerate(Verdict)}
FINDINGS = frozenset(v for v in Verdict if v.finding)


def from_status(status: str) -> Verdict:
    """The verdict of a variant that did not finish, from its status (``interrupted``)."""
    return Verdict(status.upper())


class Grade(str, Enum):
    """How an iteration's outputs compare with the scenario's clean reference. The members are
    in order of severity (an iteration takes the grade of its worst output); a grade that does
    not pass is a failure in rates, attribution, ``report`` and ``compare``. A Grade is a
    ``str``: rows, SQL and the summary's JSON hold the word itself."""

    # (word, passes, column head in the summary and the live view)
    EXACT = ("exact", True, "exact")  # every output bit-identical to the reference
    CLOSE = ("close", True, "close")  # the worst output within the scenario's tolerance
    UNGRADED = ("ungraded", True, "ungr")  # no usable reference, or no readable output
    MISMATCH = ("mismatch", False, "mism")  # an output beyond the tolerance
    NON_FINITE = ("non_finite", False, "nan")  # NaN or Inf in an output
    INVALID = ("invalid", False, "inval")  # MNN returned an error code
    ERROR = ("error", False, "err")  # MNN raised

    passing: bool
    short: str

    def __new__(cls, word: str, passing: bool, short: str) -> Grade:
        member = str.__new__(cls, word)
        member._value_ = word
        member.passing, member.short = passing, short
        return member

    def __str__(self) -> str:
        return self.value

    @property
    def severity(self) -> int:
        """Its place in the order above: 0 is the best."""
        return _GRADE_ORDER[self]


_GRADE_ORDER = {grade: place for place, grade in enumerate(Grade)}
