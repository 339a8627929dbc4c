"""The verdicts, defined once (stress.analysis.verdicts): every renderer has a style for each,
and the order, the findings and the statuses agree with what the summary can say."""

from __future__ import annotations

import re

import pytest
from rich.style import Style

from stress.analysis import html
from stress.analysis.grading import FAILING, GRADES, PASSING, SEVERITY
from stress.analysis.report import has_findings
from stress.analysis.summary_model import (
    GradeCounts,
    OnnxRuntimeCheck,
    OrtCompared,
    RunSummary,
    ScenarioReference,
    VariantSummary,
)
from stress.analysis.verdicts import FINDINGS, Grade, Verdict, from_status
from stress.records.states import VariantStatus

FINISHED_WITH_THEIR_OWN = {"done", "quarantined", "refused", "failed"}  # summary.verdict


@pytest.mark.parametrize("verdict", list(Verdict))
def test_every_verdict_is_styled_by_every_renderer(verdict):
    Style.parse(verdict.style)  # a rich style the terminal table can draw
    assert re.search(rf"\.{verdict.html_class}\{{", html.CSS), verdict.html_class
    assert f'class="v {verdict.html_class}"' in str(html._verdict(verdict))


def test_memcheck_is_sorted_and_coloured_as_the_finding_it_is():
    """The HTML report once left MEMCHECK out of its lists: sorted first as unknown, and
    coloured as "other"."""
    assert Verdict.MEMCHECK.finding and Verdict.MEMCHECK.html_class == "bad"
    assert html._rank("CRASHED") < html._rank("MEMCHECK") < html._rank("INCONSISTENT")
    flagged = VariantSummary.model_construct(verdict=Verdict.MEMCHECK)  # its other fields unread
    assert has_findings(RunSummary.model_construct(references={}, variants=[flagged]))


def test_the_order_puts_findings_first_and_ok_last():
    ranked = sorted(Verdict, key=lambda v: v.severity)
    assert ranked[-1] is Verdict.OK
    assert all(v.finding for v in ranked[: len(FINDINGS)])
    assert not any(v.finding for v in ranked[len(FINDINGS) :])


@pytest.mark.parametrize("status", [s.value for s in VariantStatus])
def test_every_unfinished_status_has_a_verdict(status):
    if status in FINISHED_WITH_THEIR_OWN:
        return
    verdict = from_status(status)
    assert not verdict.finding and verdict.value == status.upper()


def test_a_verdict_is_its_word_in_json_and_text():
    import json

    assert json.dumps([Verdict.OK, Verdict.MEMCHECK]) == '["ok", "MEMCHECK"]'
    assert f"{Verdict.OK} {Verdict.CRASHED}" == "ok CRASHED" and Verdict.OK == "ok"


def test_the_grades_are_one_definition_that_the_summary_and_sql_follow():
    """Grade is the one list: the summary's per-grade counts have a field for each, in
    order; the SQL severity ranks them in that order; passing and failing split them."""
    assert list(GradeCounts.model_fields) == [grade.value for grade in Grade]
    assert [SEVERITY[grade.value] for grade in Grade] == list(range(len(Grade)))
    assert set(PASSING) | set(FAILING) == set(GRADES) and not set(PASSING) & set(FAILING)
    assert PASSING == ("exact", "close", "ungraded")
    assert Grade("mismatch") is Grade.MISMATCH and not Grade.MISMATCH.passing


def test_a_disagreement_with_onnxruntime_is_a_finding_for_every_failing_grade():
    """``has_findings`` counts a reference ONNX Runtime disagrees with, by grade."""
    for grade in Grade:
        summary = _summary_with_onnxruntime_grade(grade.value)
        assert has_findings(summary) is (not grade.passing), grade


def _summary_with_onnxruntime_grade(word: str) -> RunSummary:
    found = OrtCompared.model_construct(grade=word)  # its other fields unread
    check = OnnxRuntimeCheck.model_construct(status="done", outputs={"y": found})
    reference = ScenarioReference.model_construct(onnxruntime=check)
    return RunSummary.model_construct(references={"s": reference}, variants=[])


def test_every_finding_repro_cannot_look_for_has_its_reason():
    """``repro`` refuses such a verdict with the reason ``UNSEEN_BY_THE_SCRIPT`` gives."""
    from stress.analysis.verdicts import FINDINGS
    from stress.repro.make import UNSEEN_BY_THE_SCRIPT

    assert set(UNSEEN_BY_THE_SCRIPT) == {v for v in FINDINGS if not v.reproducible}
