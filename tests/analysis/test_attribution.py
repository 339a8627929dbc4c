"""Attribution: which factor values explain the failures, and when the matrix cannot tell."""

from __future__ import annotations

import itertools
import json
import random

import pytest

from stress.analysis.attribution import Predicate, VariantOutcome, attribute
from stress.analysis.explain import across_scenarios
from tests.conftest import run_cli


def matrix(factors: dict[str, list], fails, n: int = 1000, failed: int = 30, keep=None) -> list:
    """The full product of ``factors`` (or the combinations ``keep`` accepts); ``failed`` of
    ``n`` iterations fail in the variants ``fails`` accepts, none elsewhere."""
    variants = []
    for values in itertools.product(*factors.values()):
        params = dict(zip(factors, values))
        if keep is None or keep(params):
            count = failed if fails(params) else 0
            variants.append(VariantOutcome(f"v{len(variants)}", params, n, count))
    return variants


def score_of(attribution, *terms):
    wanted = Predicate.of(*terms)
    return next(score for score in attribution.scores if score.predicate == wanted)


ABC = {"a": [1, 2], "b": ["x", "y"], "c": ["p", "q"]}


def test_a_single_factor_value_explains_the_failures():
    result = attribute(matrix(ABC, lambda p: p["a"] == 2))
    assert result.explanation == Predicate.of(("a", 2))
    top = result.scores[0]
    assert top.predicate == Predicate.of(("a", 2)) and top.increase == pytest.approx(0.03)
    assert top.importance == pytest.approx(2 / (1 / 0.03 + 1 / 1.0))  # every failure has a=2
    assert "a=2" in result.sentence and "120 of 4,000" in result.sentence
    assert "b=" not in result.sentence and "c=" not in result.sentence
    assert result.confounded == []


def test_a_factor_that_is_off_reads_as_a_scenario_writes_it_not_as_python_none():
    result = attribute(
        matrix(
            {"rlimit_as_headroom_mib": [None, 64]}, lambda p: p["rlimit_as_headroom_mib"] is None
        )
    )
    assert str(result.explanation) == "rlimit_as_headroom_mib=off"
    assert "rlimit_as_headroom_mib=off" in result.sentence and "None" not in result.sentence


def test_two_values_of_one_factor_that_both_fail_read_either_a_or_b():
    """No conjunction holds in exactly the failing variants (they have a=1 or a=2); the
    sentence said "no conjunction separates" and named one of them."""
    factors = {"a": [1, 2, 3], "b": ["x", "y"]}
    result = attribute(matrix(factors, lambda p: p["a"] in (1, 2)))
    assert result.explanation is None
    assert result.sentence.startswith("failures only with a=1 or a=2: 120 of 4,000")
    assert "every other variant: 0 of 2,000" in result.sentence
    alone = attribute(matrix(factors, lambda p: p["a"] in (1, 2) and p["b"] == "x"))
    assert alone.sentence.startswith("no conjunction")  # a=1|2 holds where b=y passes too


def test_values_of_two_factors_that_each_fail_read_either_a_or_b():
    """Failing where precision=low or where memory_mode=low: a value of each, not a pair."""
    factors = {"precision": ["normal", "low"], "memory_mode": ["normal", "low"], "t": [1, 2]}
    fails = lambda p: "low" in (p["precision"], p["memory_mode"])  # noqa: E731
    result = attribute(matrix(factors, fails))
    assert result.explanation is None
    assert result.sentence.startswith(
        "failures only with memory_mode=low or precision=low: 180 of 6,000"
    )
    assert "other choice" not in result.sentence
    some = attribute(matrix(factors, lambda p: fails(p) and p["t"] == 1))
    assert some.sentence.startswith("no conjunction")  # each value holds where t=2 passes


def test_two_choices_of_values_that_select_the_same_failing_variants_are_both_said():
    factors = {"a": [1, 2, 3], "b": ["x", "y", "z"]}
    same = lambda p: (p["a"] == 1) == (p["b"] == "x") and (p["a"] == 2) == (p["b"] == "y")  # noqa: E731
    result = attribute(matrix(factors, lambda p: p["a"] in (1, 2), keep=same))
    assert result.sentence.startswith("failures only with a=1 or a=2: ")
    assert "3 other choice(s) of values select the same variants" in result.sentence


def test_values_that_always_occur_together_are_not_told_apart():
    together = matrix(ABC, lambda p: p["a"] == 2, keep=lambda p: (p["a"] == 2) == (p["b"] == "y"))
    result = attribute(together)
    assert result.explanation is None
    assert ("a=2", "b=y") in result.confounded
    predicates = {score.predicate for score in result.scores}
    assert Predicate.of(("a", 2), ("b", "y")) not in predicates  # selects what a=2 alone does
    assert "cannot be separated" in result.sentence
    assert "a=2" in result.sentence and "b=y" in result.sentence


def test_a_pair_of_values_explains_the_failures():
    factors = {"sharing": ["none", "session"], "threads": [1, 2, 4], "api": ["session", "module"]}
    fails = lambda p: p["sharing"] == "session" and p["threads"] == 2  # noqa: E731
    result = attribute(matrix(factors, fails))
    assert result.explanation == Predicate.of(("threads", 2), ("sharing", "session"))
    assert result.explanation.terms == (("sharing", "session"), ("threads", 2))
    assert str(result.explanation) == "sharing=session and threads=2"
    assert result.scores[0].predicate == result.explanation


def test_nothing_failed():
    result = attribute(matrix(ABC, lambda p: False, n=5000))
    assert result.explanation is None and result.scores == []
    assert "nothing failed" in result.sentence and "40,000" in result.sentence


def test_failures_in_every_variant_are_explained_by_no_factor():
    result = attribute(matrix(ABC, lambda p: True))
    assert result.explanation is None
    assert "every variant" in result.sentence and "no factor value explains" in result.sentence
    assert all(score.importance == 0 for score in result.scores)


def test_a_disjunction_has_no_explanation_but_ranks_its_values_first():
    factors = {"threads": [1, 2, 4], "api": ["session", "module"]}
    result = attribute(matrix(factors, lambda p: p["threads"] in (2, 4)))
    assert result.explanation is None
    top = {str(score.predicate) for score in result.scores[:2]}
    assert top == {"threads=2", "threads=4"}
    assert result.sentence.startswith("failures only with threads=2 or threads=4: ")  # either


def test_intervals_contain_the_rate_and_widen_with_fewer_iterations():
    variants = [
        VariantOutcome("few", {"a": 1, "b": "x"}, 50, 5),
        VariantOutcome("many", {"a": 2, "b": "x"}, 5000, 500),
        VariantOutcome("clean", {"a": 3, "b": "x"}, 5000, 0),
    ]
    result = attribute(variants)
    for score in result.scores:
        assert score.ci_with[0] <= score.rate_with <= score.ci_with[1]
        assert score.ci_without[0] <= score.rate_without <= score.ci_without[1]
        assert score.increase_low == pytest.approx(score.ci_with[0] - score.ci_without[1])
    few, many = score_of(result, ("a", 1)), score_of(result, ("a", 2))
    assert few.rate_with == pytest.approx(many.rate_with)
    assert few.ci_with[1] - few.ci_with[0] > 3 * (many.ci_with[1] - many.ci_with[0])


def test_a_factor_with_one_value_is_never_a_predicate():
    factors = {**ABC, "model": ["mobilenet"]}
    result = attribute(matrix(factors, lambda p: p["a"] == 2 and p["b"] == "y"))
    assert result.scores
    named = {factor for score in result.scores for factor, _ in score.predicate.terms}
    assert "model" not in named and named == {"a", "b", "c"}
    assert "model" not in result.sentence


def test_comparable_variants_without_differ_only_in_the_predicates_factors():
    variants = matrix(ABC, lambda p: p["a"] == 2, n=100) + [
        VariantOutcome("extra", {"a": 3, "b": "z", "c": "p"}, 7000, 0)  # nothing to compare with
    ]
    result = attribute(variants)
    a2 = score_of(result, ("a", 2))
    assert a2.matched and a2.n_without == 400  # the four a=1 variants, not the extra a=3 one
    assert a2.variants_with == 4 and a2.n_with == 400
    assert score_of(result, ("b", "y")).n_without == 400  # b=x only, not b=z
    extra = score_of(result, ("b", "z"))
    assert not extra.matched and extra.n_without == 800


def test_a_planted_pair_is_found_among_a_thousand_variants():
    rng = random.Random(7)
    factors = {f"f{i}": list(range(4)) for i in range(10)}
    variants = []
    for i in range(1000):
        params = {name: rng.choice(values) for name, values in factors.items()}
        bad = params["f3"] == 1 and params["f7"] == 2
        variants.append(VariantOutcome(f"v{i}", params, 200, 9 if bad else 0))
    result = attribute(variants)  # its time is a benchmark's business, not a test's
    assert result.explanation == Predicate.of(("f3", 1), ("f7", 2))


def test_inconsistent_input_is_refused():
    with pytest.raises(ValueError):
        VariantOutcome("v", {"a": 1}, 10, 11)
    with pytest.raises(ValueError):
        attribute([VariantOutcome("v", {"a": 1}, 10, 1), VariantOutcome("w", {"b": 1}, 10, 0)])


def test_the_most_telling_value_is_named_with_the_value_it_cannot_be_told_from():
    together = lambda p: (p["a"] == 2) == (p["b"] == "y")  # noqa: E731
    fails = lambda p: (p["a"], p["c"]) in ((2, "p"), (1, "q"))  # noqa: E731
    result = attribute(matrix(ABC, fails, keep=together))
    assert result.explanation is None and "no conjunction" in result.sentence
    top = result.scores[0].predicate
    assert top in (Predicate.of(("a", 1), ("c", "q")), Predicate.of(("a", 2), ("c", "p")))
    assert "cannot be separated from b=" in result.sentence


# --- with real workers: a fault planted under one factor value -------------------------------

RUN = """
    name: blame
    model: tiny
    iterations: 8
    matrix:
      num_thread: [1, 2]
      precision: [normal, high]
    {exclude}
"""


def blamed(scenario_file, tmp_path, exclude: str = "") -> dict:
    path = scenario_file(RUN.format(exclude=exclude))
    out = tmp_path / "run"
    run_cli("run", str(path), "--out", str(out), fault="perturb@0+?num_thread=2")
    return json.loads(run_cli("summary", str(out), "--json").stdout)["attribution"]


@pytest.mark.integration
def test_a_run_names_the_factor_value_that_made_its_outputs_differ(scenario_file, tmp_path):
    found = blamed(scenario_file, tmp_path)["mismatch"]
    assert found["explanation"] == "num_thread=2"
    assert found["scores"][0]["predicate"] == "num_thread=2"
    assert "precision" not in found["sentence"].split(";")[0]
    assert found["sentence"].startswith("failures only with num_thread=2: 16 of 16")


@pytest.mark.integration
def test_a_run_whose_matrix_confounds_two_factors_says_it_cannot_tell(scenario_file, tmp_path):
    exclude = "exclude: [{num_thread: 1, precision: high}, {num_thread: 2, precision: normal}]"
    found = blamed(scenario_file, tmp_path, exclude)["mismatch"]
    assert found["explanation"] is None
    assert ["num_thread=2", "precision=high"] in found["confounded"]
    assert "cannot tell" in found["sentence"]
    assert "num_thread=2" in found["sentence"] and "precision=high" in found["sentence"]


BUNDLE = {
    "a": "matrix: {api: [session, module], num_thread: [1, 2]}",
    "b": "matrix: {precision: [normal, low], memory_mode: [normal, low]}",
    "c": "matrix: {malloc_perturb: [0, 165]}",
}


@pytest.mark.integration
def test_a_bundle_of_scenarios_is_explained_within_each_scenario(tmp_path):
    """Across scenarios everything may differ: the attribution says which scenarios failed,
    then what explains it within each; never ``scenario=b``, nor a pair of default values
    that holds in every variant of the scenario that failed."""
    for name, matrix_line in BUNDLE.items():
        text = f"name: {name}\nmodel: tiny\niterations: 6\n{matrix_line}\n"
        (tmp_path / f"{name}.yaml").write_text(text)
    out = tmp_path / "run"
    run_cli("run", str(tmp_path), "--out", str(out), fault="nan@2+?api=module,nan@2+?precision=low")
    found = json.loads(run_cli("summary", str(out), "--json").stdout)["attribution"]["non_finite"]
    sentence = found["sentence"]
    assert sentence.startswith("failures only in scenarios a, b (every other scenario: 0 of 12")
    assert "within a: failures only with api=module: 8 of 12" in sentence
    assert "within b: failures only with precision=low: 8 of 12" in sentence
    predicates = [score["predicate"] for score in found["scores"]]
    assert predicates[:2] == ["a: api=module", "b: precision=low"]  # the worst scenario first
    assert not [p for p in predicates if "scenario" in p or p.startswith("c:")]
    assert found["explanation"] is None  # two scenarios, two explanations


def bundle(**fails) -> dict:
    """Scenarios of four variants each over their own factor ``f``: ``fails[name]`` is the set
    of f's values that fail (30 of 1,000 iterations each)."""
    return {
        name: matrix({"f": [1, 2, 3, 4]}, lambda p, bad=bad: p["f"] in bad)
        for name, bad in fails.items()
    }


def test_one_failing_scenario_of_several_is_named_with_its_explanation():
    found = across_scenarios(bundle(x=set(), y={2}, z=set()))
    assert found.sentence.startswith(
        "failures only in scenario y (every other scenario: 0 of 8,000"
    )
    assert "; within y: failures only with f=2: 30 of 1,000" in found.sentence
    assert found.explanation == "scenario=y and f=2"
    assert found.scores[0].predicate == "y: f=2"


def test_when_every_scenario_failed_none_is_said_to_be_clean():
    found = across_scenarios(bundle(x={1}, y={1, 3}))
    assert found.sentence.startswith("failures in scenarios y, x; within y: failures only with")
    assert "every other scenario" not in found.sentence and found.explanation is None
    assert [s.predicate for s in found.scores[:2]] == ["y: f=1", "x: f=1"]  # in turn


def test_a_bundle_where_nothing_failed_says_so_over_every_iteration():
    found = across_scenarios(bundle(x=set(), y=set()))
    assert found.sentence.startswith("nothing failed in 8,000 iterations") and not found.scores
