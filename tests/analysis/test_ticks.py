"""Tick labels of the report's plots, drawn by matplotlib as a reader sees them."""

from __future__ import annotations

from datetime import datetime, timedelta

import matplotlib.pyplot as plt
import pytest

from stress.analysis.ticks import Decimals, clock_x, duration_unit, log_ticks, log_x, power_of_ten


def _drawn(axes) -> list[str]:
    axes.figure.canvas.draw()
    labels = [t.get_text() for t in axes.get_xticklabels()]
    plt.close(axes.figure)
    return [label for label in labels if label]


@pytest.mark.parametrize("deaths", [1, 3])
def test_deaths_within_a_second_get_whole_seconds_apart(deaths):
    at = datetime(2026, 12, 7, 23, 59, 58, 400_000)
    times = [at + timedelta(milliseconds=100 * i) for i in range(deaths)]
    _, axes = plt.subplots()
    axes.scatter(times, range(deaths))
    clock_x(axes, times)
    labels = _drawn(axes)
    assert len(labels) >= 2 and len(set(labels)) == len(labels), labels
    assert all(len(label) == 8 and label[2] == label[5] == ":" for label in labels), labels
    assert axes.get_xlabel() == "time (UTC), 2026-12-07"


def test_deaths_over_more_than_a_day_give_the_day_in_every_tick():
    times = [datetime(2026, 12, 7, 22), datetime(2026, 12, 9, 3)]
    _, axes = plt.subplots()
    axes.scatter(times, [0, 1])
    clock_x(axes, times)
    labels = _drawn(axes)
    assert labels and all(label[2] == "-" and label[8] == ":" for label in labels), labels
    assert axes.get_xlabel() == "time (UTC), 2026-12-07 to 2026-12-09"


def test_decimals_are_shared_by_an_axis_and_exact():
    assert Decimals("s").format_ticks([0, 0.5, 1.0]) == ["0.0 s", "0.5 s", "1.0 s"]
    assert Decimals("MiB").format_ticks([17.6, 17.650000000000002, 17.7]) == [
        "17.60 MiB",
        "17.65 MiB",
        "17.70 MiB",
    ]
    assert Decimals("%", scale=100).format_ticks([0.9999, 1.0]) == ["99.99 %", "100.00 %"]
    each = Decimals("%", scale=100, each=True)
    assert each.format_ticks([1e-5, 0.01, 1.0]) == ["0.001 %", "1 %", "100 %"]


def test_a_duration_axis_takes_the_unit_of_its_longest():
    assert duration_unit(90) == (1.0, "s")
    assert duration_unit(600) == (60.0, "min")
    assert duration_unit(8 * 3600) == (3600.0, "h")


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (5e-3, 5e-3, [4e-3, 5e-3, 6e-3]),  # one value: widened to three
        (3.4e-3, 3.6e-3, [3e-3, 4e-3, 5e-3]),  # within one digit
        (6.1e-3, 9.5e-3, [7e-3, 8e-3, 9e-3]),  # within half a decade: every digit
        (1.1e-2, 9e-2, [2e-2, 5e-2, 1e-1]),  # about one decade: 1-2-5, widened
        (1.1e-2, 4.7e-1, [3e-2, 1e-1, 3e-1]),  # a few: 1-3
        (1e-7, 1.2, [1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1]),  # many: powers of ten
        (1e-30, 1e-2, [1e-28, 1e-24, 1e-20, 1e-16, 1e-12, 1e-8, 1e-4]),  # every few
    ],
)
def test_log_ticks_are_round_and_at_least_three(low, high, expected):
    assert log_ticks(low, high) == pytest.approx(expected, rel=1e-9)


def test_a_log_axis_with_one_point_has_three_labelled_ticks():
    _, axes = plt.subplots()
    axes.scatter([3.47e-3], [0])
    log_x(axes, power_of_ten)
    labels = _drawn(axes)
    assert len(set(labels)) == len(labels) >= 3, labels


def test_powers_of_ten_are_written_in_one_form():
    assert [power_of_ten(v) for v in (3 * 10.0**-7, 1e-7, 1.0, 20.0)] == [
        "3×10⁻⁷",
        "1×10⁻⁷",
        "1×10⁰",
        "2×10¹",
    ]
