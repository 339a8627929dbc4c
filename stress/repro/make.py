"""Write a variant's reproduction script and run it K times in fresh processes."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import pprint
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ruamel.yaml import YAML

from stress.analysis import drift
from stress.analysis.references import load_references
from stress.analysis.summary import summarize
from stress.analysis.summary_model import VariantSummary
from stress.analysis.tolerance import tolerances_for
from stress.analysis.verdicts import Verdict
from stress.contract import dtypes
from stress.coordinator.jobs import input_plans
from stress.errors import StressError
from stress.factors import changed, complete, misuse, mnn_config
from stress.models import ModelInfo
from stress.records.manifest import ManifestData, read_manifest
from stress.scenario import LoadedScenario
from stress.scenario.schema import Scenario
from stress.worker import faults

TEMPLATE = Path(__file__).with_name("script.py")
SETUP_RAISED = 3  # the script's exit status when MNN raised before the first iteration
FILE_MISSING = 4  # ... and when the model or an input file is not beside it
SCRIPT_FAILED = 5  # ... and when the script itself raised
SETTINGS_LINE = "SETTINGS: dict = {}  # filled in by mnn-stress repro\n"
# Factors the script recreates; any other at a non-default value is named as not recreated.
RECREATED = ("api", "threads", "sharing", "lifecycle", "inputs_written", "caller_lock")
RECREATED += ("num_thread", "precision", "memory_mode", "power_mode", "backend")
RECREATED += ("convert",)  # the script loads the variant's own conversion
RECREATED += ("misuse",)  # the same wrong calls (unknown_output: in the job's output names)
RECREATED += ("node",)  # where a cluster run placed it: the script runs where it is run
# Why the script cannot look for a finding (``Verdict.reproducible`` is False), per verdict
UNSEEN_BY_THE_SCRIPT = {
    Verdict.ORT_MISMATCH: "it compares outputs with MNN's own clean reference, which this "
    "variant matches; ONNX Runtime's disagreement with that reference is in `report`",
    Verdict.HARNESS_ERROR: "that was a bug of mnn-stress, not something MNN did",
}
DEFAULT_ITERATIONS = 1000
LEAK_ITERATIONS = 20_000  # a leak shows over the iterations it grew over: the run's, up to this
# The run's leak rule (``analysis.drift``), for the script's own look at its resident memory
LEAK_RULE = {
    "warmup_fraction": drift.WARMUP_FRACTION,
    "warmup_min": drift.WARMUP_MIN,
    "min_fitted": drift.MIN_FITTED,
    "per_1k": drift.LEAK_BYTES_PER_1K,
    "min_growth": drift.LEAK_MIN_GROWTH,
}
# What the script looks for, per grade or death the run saw.
LOOKING_FOR = {"mismatch": "mismatch", "non_finite": "non_finite", "invalid": "invalid"}
LOOKING_FOR |= {"error": "error"}


@dataclass
class ReproRuns:
    """How K fresh runs of the script ended."""

    script: Path
    runs: int
    reproduced: int = 0
    outcomes: list[str] = field(default_factory=list)


def write_script(
    run_dir: Path, variant_id: str, out: Path, iterations: int | None
) -> dict[str, Any]:
    """Write the variant's script to ``out`` (a .py file) and return its settings;
    StressError for an unknown variant."""
    manifest = read_manifest(run_dir)
    entry = manifest.variants.get(variant_id)
    if entry is None:
        known = ", ".join(sorted(manifest.variants)[:8])
        raise StressError(
            f"{run_dir} has no variant {variant_id!r}", fix=f"its variants include: {known}"
        )
    summary = summarize(run_dir).variant(variant_id)
    settings = _settings(run_dir, manifest, variant_id, summary, iterations)
    text = TEMPLATE.read_text()
    if SETTINGS_LINE not in text:
        raise RuntimeError("repro: the script template lost its SETTINGS line")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _bundle(settings, out.parent)
        text = text.replace(SETTINGS_LINE, f"SETTINGS: dict = {_literal(settings)}\n")
        out.write_text(text)
    except OSError as exc:
        raise StressError(
            f"cannot write the script: {exc.strerror or exc}",
            file=str(exc.filename or out),
            key="--out",
            fix="give --out a .py file in a folder that exists or can be made, and is writable",
        ) from exc
    return settings


def _bundle(settings: dict[str, Any], folder: Path) -> None:
    """The model and any input files beside the script, named relative to it: the script and
    its folder can be moved, or attached to an issue upstream, and still find them."""
    settings["model"] = _beside(settings["model"], folder)
    for spec in settings["inputs"]:
        if spec.get("file"):
            spec["file"] = _beside(spec["file"], folder)


def _beside(source: str, folder: Path) -> str:
    """``source`` linked (else copied) into ``folder`` under a name unique to its path; the
    name, relative to the folder."""
    path = Path(source).resolve()
    tag = hashlib.blake2b(str(path).encode(), digest_size=4).hexdigest()
    copy = folder / f"{path.stem}-{tag}{path.suffix}"
    if not copy.exists():
        try:
            os.link(path, copy)
        except FileExistsError:
            pass  # another ``repro`` of the same run put it there meanwhile
        except OSError:  # another file system, or links not allowed: a copy, whole or none
            partial = copy.with_name(f"{copy.name}.{os.getpid()}.partial")
            shutil.copyfile(path, partial)
            os.replace(partial, copy)
    return copy.name


def _settings(
    run_dir: Path,
    manifest: ManifestData,
    vid: str,
    summary: VariantSummary,
    iterations: int | None,
) -> dict[str, Any]:
    entry = manifest.variants[vid]
    scenario = _scenario(manifest, entry.scenario)
    params = complete(entry.params)
    in_run = entry.stop_iteration or max(1, summary.iterations // params["threads"])
    most = LEAK_ITERATIONS if summary.verdict is Verdict.LEAK else DEFAULT_ITERATIONS
    per_thread = iterations or min(in_run, most)
    fault = _fault(manifest.test_fault, params)
    return {
        "run": manifest.run_id,
        "variant": vid,
        "scenario": entry.scenario,
        "mnn_version_in_run": manifest.versions.get("MNN"),
        "observed": {"verdict": summary.verdict.value, "grades": summary.grades.model_dump()},
        "not_recreated": not_recreated(params),
        "looking_for": _looking_for(summary),
        "model": scenario.model_for(params).path,
        "inputs": [vars(plan) for plan in input_plans(scenario)],
        "seed": scenario.spec.seed,
        "outputs": misuse.output_names(params, [t.name for t in scenario.model.outputs]),
        "output_dtypes": {t.name: t.dtype for t in scenario.model.outputs},
        "halide": {t.name: dtypes.by_name(t.dtype).halide for t in scenario.model.inputs},
        "api": params["api"],
        "threads": params["threads"],
        "sharing": params["sharing"],
        "lifecycle": params["lifecycle"],
        "inputs_written": params["inputs_written"],
        "caller_lock": params["caller_lock"],
        "misuse": params["misuse"],
        "unknown_name": misuse.UNKNOWN_NAME,
        "config": mnn_config(params),
        "iterations": per_thread,
        "iterations_in_run": in_run,
        "fault": fault,
        "tolerance": vars(tolerances_for(_tolerance(manifest, entry.scenario), "")),
        "leak": LEAK_RULE,
        "reference": _reference(run_dir, entry.scenario),
    }


def not_recreated(params: dict[str, Any]) -> dict[str, Any]:
    """The variant's factor values (beyond the defaults) that the script cannot recreate."""
    return {k: v for k, v in changed(params).items() if k not in RECREATED}


def _scenario(manifest: ManifestData, name: str) -> LoadedScenario:
    """The scenario as the run had it: its text and resolved model, from the manifest."""
    recorded = next(s for s in manifest.scenarios if s["name"] == name)
    path = Path(manifest.cwd) / recorded["path"]
    spec = Scenario.model_validate(YAML(typ="safe").load(recorded["text"]))
    return LoadedScenario(path, recorded["text"], spec, ModelInfo.from_dict(recorded["model"]))


def _tolerance(manifest: ManifestData, name: str) -> dict[str, Any]:
    return next(s for s in manifest.scenarios if s["name"] == name).get("tolerance", {})


def _looking_for(summary: VariantSummary) -> list[str]:
    """The failures to look for: the run's failing grades, inconsistency, and crashes."""
    wanted = [LOOKING_FOR[g] for g, n in summary.grades.items() if n and g in LOOKING_FOR]
    if summary.distinct_outputs > 1:
        wanted.append("inconsistent")
    if summary.events.crash:
        wanted.append("crash")
    if summary.events.exception and summary.iterations == 0:
        wanted.append("setup_error")  # it raised before its first iteration (REFUSED)
    if summary.verdict is Verdict.LEAK:
        wanted.append("leak")
    return wanted or ["mismatch", "non_finite", "invalid", "error", "inconsistent"]


def _fault(spec: str | None, params: dict[str, Any]) -> dict[str, Any] | None:
    """The run's test-only fault for this variant (the first that applies), if it had one."""
    for fault in faults.parse(spec):
        if fault.applies(params):
            return {"kind": fault.kind, "at": fault.at, "repeats": fault.repeats}
    return None


def _reference(run_dir: Path, scenario: str) -> str | None:
    """The clean reference outputs as a base64 .npz (None without a reference)."""
    found = load_references(run_dir, [scenario])
    arrays = {o: ref.values for (s, o), ref in found.outputs.items() if ref.values is not None}
    if not arrays:
        return None
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return base64.b64encode(buffer.getvalue()).decode()


def _literal(settings: dict[str, Any]) -> str:
    """A Python literal of the settings (plain values only: repr round-trips them)."""
    return pprint.pformat(settings, width=100, sort_dicts=False)


def _last_error(stderr: str) -> list[str]:
    return [line for line in stderr.strip().splitlines() if line.strip()][-1:]


def run_script(script: Path, runs: int, looking_for: list[str], timeout: float) -> ReproRuns:
    """Run the script ``runs`` times, each in a fresh process; a signal death counts as
    reproduced when the run crashed."""
    result = ReproRuns(script, runs)
    for _ in range(runs):
        try:
            done = subprocess.run(
                [sys.executable, str(script)], capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            result.outcomes.append("timeout")
            continue
        if done.returncode < 0:
            outcome = f"signal {-done.returncode}"
            result.reproduced += "crash" in looking_for
        elif done.returncode == 1:
            outcome, result.reproduced = "reproduced", result.reproduced + 1
        elif done.returncode == SETUP_RAISED:
            outcome = "raised while setting up"
            result.reproduced += "setup_error" in looking_for
        elif done.returncode == FILE_MISSING:  # never a reproduction: nothing of MNN ran
            outcome = "a file it needs is not beside it"
        elif done.returncode == SCRIPT_FAILED:
            outcome = f"the script failed: {' '.join(_last_error(done.stderr))}"
        elif done.returncode == 0:
            outcome = "not seen"
        else:
            said = " ".join(_last_error(done.stderr)) or "nothing on stderr"
            outcome = f"exit {done.returncode}: {said}"
        result.outcomes.append(outcome)
    return result
