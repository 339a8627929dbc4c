"""Tick labels of the report's plots, drawn by matplotlib as a reader sees them."""

from __future__ import annotations

from datetime import datetime, timedelta

import matplotlib.pyplot as plt
import pytest

from stress.analysis.ticks import Decimals, clock_x, duration_unit


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
