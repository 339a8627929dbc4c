"""Untrusted scenario files: whatever the bytes, loading ends quickly in a ScenarioError or a
valid scenario, never a traceback, a hang or a memory blow-up."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from stress.errors import ScenarioError
from stress.models import ModelInfo, TensorInfo
from stress.scenario import load_scenario
from stress.scenario.yaml_source import MAX_LINES, MAX_NESTING, MAX_SCENARIO_BYTES, MAX_VALUES
from tests.conftest import run_cli
from tests.scenario.test_scenario import GOOD, error_for

BILLION_LAUGHS = "name: laughs\nmodel: tiny\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 10)
)


def refused(path: Path) -> ScenarioError:
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    return caught.value


def test_bytes_that_are_not_utf8_are_reported_at_their_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: demo\nmodel: tiny\ndescription: caf\xe9 au lait\n")
    error = refused(path)
    assert error.line == 3 and error.file == str(path)
    assert "not UTF-8" in error.message and "0xe9 at column 17" in error.message
    assert "UTF-8" in error.fix


def test_a_device_or_fifo_is_refused_as_not_a_file_and_never_read(tmp_path):
    """``validate /dev/zero`` or a FIFO nobody writes: said at once, never read (a hang)."""
    import os

    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    for path in (Path("/dev/zero"), fifo):
        assert refused(path).message == "not a regular file (a device, a FIFO, ...)"
    assert refused(tmp_path / "absent.yaml").message == "no such scenario file"


def test_utf8_text_loads_and_is_kept_as_written(tmp_path):
    path = tmp_path / "utf8.yaml"
    path.write_bytes("name: demo\nmodel: tiny\ndescription: café ☕\n".encode())
    loaded = load_scenario(path)
    assert loaded.spec.description == "café ☕" and "café ☕" in loaded.text


def test_a_file_over_the_size_limit_is_refused_with_its_size(scenario_file):
    path = scenario_file(GOOD + "#" * MAX_SCENARIO_BYTES)
    error = refused(path)
    assert f"{path.stat().st_size:,} bytes" in error.message
    assert f"limit of {MAX_SCENARIO_BYTES:,}" in error.message
    padded = GOOD.replace("    ", "").lstrip()
    path.write_text(padded + "#" * (MAX_SCENARIO_BYTES - len(padded)))
    assert load_scenario(path).spec.name == "demo"  # exactly at the limit


def test_a_file_of_too_many_lines_is_refused_before_it_is_parsed(scenario_file):
    # 1 MiB of comment lines took ruamel 20 s to parse.
    started = time.monotonic()
    error = refused(scenario_file(GOOD + "#\n" * MAX_LINES))
    assert time.monotonic() - started < 10
    assert f"{MAX_LINES + 6:,} lines, more than the limit of {MAX_LINES:,}" in error.message


def test_billion_laughs_is_refused_in_under_two_seconds(scenario_file):
    path = scenario_file(BILLION_LAUGHS)
    started = time.monotonic()
    error = refused(path)
    assert time.monotonic() - started < 10  # unbounded, it ran past 60 s at 2 GB
    assert f"aliases (*name) expand to more than {MAX_VALUES:,} values" in error.message


def test_aliases_that_nest_too_deep_are_refused(scenario_file):
    # Each anchor is 10 levels deep as written; the aliases stack them 40 deep.
    text = "name: deep\nmodel: tiny\nd0: &d0 1\n" + "".join(
        f"d{i}: &d{i} {'[' * 10}*d{i - 1}{']' * 10}\n" for i in range(1, 5)
    )
    error = refused(scenario_file(text))
    assert f"nest values more than {MAX_NESTING} levels deep" in error.message


@pytest.mark.parametrize(
    "nested",
    [
        "a: " + "[" * 5000 + "]" * 5000,  # today: RecursionError
        "a: " + "{b: " * 3000 + "1" + "}" * 3000,
        "a: " + "[" * (MAX_SCENARIO_BYTES - 40),  # never closed: refused before the end
        "".join(f"{'  ' * i}k{i}:\n" for i in range(100)) + "  " * 100 + "v",
    ],
)
def test_deep_nesting_is_refused_at_its_line(scenario_file, nested):
    started = time.monotonic()
    error = refused(scenario_file("name: deep\nmodel: tiny\n" + nested))
    assert time.monotonic() - started < 10  # deep nesting once hit a RecursionError
    assert f"nested more than {MAX_NESTING} levels deep" in error.message
    assert error.line is not None and error.line >= 3


def test_too_many_values_are_refused_before_they_are_built(scenario_file):
    many = "matrix:\n  num_thread: [" + ", ".join(["1"] * MAX_VALUES) + "]\n"
    error = refused(scenario_file("name: many\nmodel: tiny\n" + many))
    assert f"more than {MAX_VALUES:,} keys and values" in error.message and error.line == 4


def test_a_huge_integer_is_refused_at_its_line(scenario_file):
    # CPython will not convert an integer of more than 4300 digits: today a ValueError traceback.
    error = error_for(scenario_file, GOOD + "    seed: " + "9" * 5000 + "\n")
    assert error.line == 7 and "5,000 digits" in error.message
    error = error_for(scenario_file, GOOD + "    seed: " + "9" * 500 + "\n")
    assert error.key == "seed" and "less than or equal to" in error.message


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("description: a\x00b\n", 3),  # ruamel's ReaderError: today a traceback
        ("description: 2020-13-45\n", None),  # an impossible date: ValueError inside ruamel
        ("? [a, [b]]\n: 1\n", None),  # a nested list as a key: TypeError inside ruamel
        ("seed: !!int nine\n", None),
        ("seed: !!float nine\n", None),
        ("seed: !!binary 'zz'\n", 3),
        ("seed: 1\nseed: 2\n", 4),  # duplicate keys
        ("seed: *nowhere\n", 3),
        ("%YAML 9.9\n---\n", 1),
    ],
)
def test_whatever_the_yaml_library_raises_becomes_a_scenario_error(scenario_file, text, line):
    prefix = "name: odd\nmodel: tiny\n" if not text.startswith("%") else ""
    error = refused(scenario_file(prefix + text))
    assert "not valid YAML" in error.message
    assert error.line == line


def test_anchors_and_aliases_used_normally_keep_working(scenario_file, monkeypatch):
    inputs = (TensorInfo("left", (1, 4), "float32"), TensorInfo("right", (1, 4), "float32"))
    model = ModelInfo("pair", "/nowhere/pair.mnn", "mnn", inputs, (), "3.6.1")
    monkeypatch.setattr("stress.models.resolve.resolve_model", lambda *_, **__: model)
    spec = load_scenario(
        scenario_file("""
            name: shared
            model: pair.mnn
            inputs:
              left: &spec {distribution: uniform, scale: 0.5}
              right: {<<: *spec, distribution: ones}
            matrix:
              num_thread: &threads [1, 2]
        """)
    ).spec
    assert (spec.inputs["left"].distribution, spec.inputs["left"].scale) == ("uniform", 0.5)
    assert (spec.inputs["right"].distribution, spec.inputs["right"].scale) == ("ones", 0.5)
    assert spec.matrix.num_thread == [1, 2]


FUZZ_SEED_TEXT = (
    GOOD.replace("\n    ", "\n").lstrip()
    + """description: "fuzz base"
seed: 7
timeout: 2s
max_crashes: 2
workers: 2
record: {max_value_bytes: 1024}
inputs:
  x: &spec {distribution: uniform, scale: 0.5, shape: [1, 3, 24, 24]}
"""
)
_SYNTAX = (b"&a ", b"*a", b"<<: ", b"[", b"]", b"{", b"}", b": ", b"- ", b"? ", b"\n  ", b"\t")
_MARKS = (b"#", b"!!", b"!!python/object ", b"'", b'"', b"|", b">", b"%", b"@", b"`", b"---\n")
_VALUES = (b".nan", b".inf", b"-.inf", b"1e400", b"9" * 30, b"9" * 700, b"2020-13-45", b"~")
_BREAKS = (b"\r", b"\xc2\x85", b"\xe2\x80\xa8", b"\xef\xbb\xbf")  # NEL, LINE SEPARATOR, BOM
_BYTES = (b"\x00", b"\x1b", b"\xff", b"\xc3", b"\xe2\x98")  # control, invalid, cut-off UTF-8
_SPICE = _SYNTAX + _MARKS + _VALUES + _BREAKS + _BYTES


def _mutant(base: bytes, rng: random.Random) -> bytes:
    """A few random changes to a valid scenario: cut, insert, repeat, shuffle, truncate, or
    replace it all with random bytes."""
    data = bytearray(base)
    for _ in range(rng.choice((1, 1, 2, 3))):
        at = rng.randrange(len(data) + 1)
        kind = rng.randrange(7)
        if kind == 0:
            del data[at : at + rng.randrange(1, 12)]
        elif kind == 1:
            data[at:at] = rng.choice(_SPICE)
        elif kind == 2:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 6)))
        elif kind == 3:
            data[at:at] = data[at : at + rng.randrange(1, 40)] * rng.randrange(2, 6)
        elif kind == 4:
            lines = bytes(data).split(b"\n")
            rng.shuffle(lines)
            data = bytearray(b"\n".join(lines))
        elif kind == 5:
            del data[at:]
        else:
            data = bytearray(rng.randbytes(rng.randrange(200)))
    return bytes(data)


@pytest.mark.filterwarnings("ignore::ruamel.yaml.error.ReusedAnchorWarning")
def test_fuzzed_scenarios_give_a_scenario_error_or_a_scenario(tmp_path):
    rng = random.Random(20240611)
    base = FUZZ_SEED_TEXT.encode()
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(base)
    assert load_scenario(path).spec.seed == 7  # the seed text is valid
    outcomes = {"valid": 0, "refused": 0}
    started = time.monotonic()
    for case in range(600):
        path.write_bytes(_mutant(base, rng))
        try:
            load_scenario(path)
            outcomes["valid"] += 1
        except ScenarioError as exc:
            assert exc.file == str(path) and exc.message, (case, path.read_bytes())
            outcomes["refused"] += 1
        except Exception as exc:  # the finding: print the input that caused it
            raise AssertionError(f"case {case}: {exc!r} for {path.read_bytes()!r}") from exc
    assert outcomes["valid"] >= 5 and outcomes["refused"] >= 300, outcomes
    assert time.monotonic() - started < 60


def test_cli_reports_a_hostile_file_without_a_traceback(scenario_file):
    path = scenario_file(BILLION_LAUGHS)
    done = run_cli("validate", str(path), check=False, timeout=60)
    assert done.returncode == 2
    assert "aliases (*name) expand" in done.stderr and "Traceback" not in done.stderr
