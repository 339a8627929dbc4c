"""How ``repro`` reads a script's exit (each status its own outcome, in words), and what it
puts beside its scripts."""

from __future__ import annotations

from pathlib import Path

import pytest

from stress.repro import make
from stress.repro.make import run_script


@pytest.mark.parametrize(
    ("body", "outcome", "reproduced"),
    [
        ("import sys; sys.exit(0)", "not seen", 0),
        ("import sys; sys.exit(1)", "reproduced", 1),
        ("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", "signal 11", 1),
        ("import sys; print('boom', file=sys.stderr); sys.exit(7)", "exit 7: boom", 0),
        ("import sys; sys.exit(9)", "exit 9: nothing on stderr", 0),
    ],
)
def test_each_exit_is_an_outcome_in_words(tmp_path, body, outcome, reproduced):
    script = tmp_path / "repro.py"
    script.write_text(body + "\n")
    result = run_script(script, 1, ["crash"], timeout=60)
    assert result.outcomes == [outcome]
    assert result.reproduced == reproduced


def test_two_repros_of_one_run_share_the_models_link(tmp_path, monkeypatch):
    """Two ``repro`` commands of one run at once: the second to link the model finds the
    first's link there (the moment between its look and its link, made here by hand)."""
    model = tmp_path / "model.mnn"
    model.write_bytes(b"weights")
    folder = tmp_path / "repro"
    folder.mkdir()
    first = make._beside(str(model), folder)
    monkeypatch.setattr(Path, "exists", lambda self: False)  # it looked before the first linked
    assert make._beside(str(model), folder) == first
    assert (folder / first).read_bytes() == model.read_bytes() == b"weights"
