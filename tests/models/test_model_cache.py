"""The model cache against what real disks and users do to it: a full disk or a file-size limit
during a build, a record left empty or garbled, a cached model damaged in place, a cache path
that is a file, a cache folder this user cannot write. Each is a clear error or a rebuild,
never a traceback, and never a damaged model handed to workers."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stress.models.resolve import resolve_model
from tests.conftest import REPO, read_events, read_iterations, run_cli, run_cli_bound_by_permissions


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    """A private cache for the CLI under test, seeded with the session's built ``tiny`` (so
    no test but the full-disk one pays for a build)."""
    built = Path(resolve_model("tiny", Path(".")).path)
    cache = tmp_path / "cache"
    shutil.copytree(built.parent.parent.parent, cache)
    monkeypatch.setenv("MNN_STRESS_CACHE", str(cache))
    model = cache / built.relative_to(built.parent.parent.parent)
    return model


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("record", [b"", b'{"model": {"ref": "ti', b"\x00" * 64])
def test_an_empty_or_garbled_record_is_rebuilt_not_a_traceback(own_cache, scenario_file, record):
    """A full disk once left a 0-byte record; every command raised until it was deleted."""
    own_cache.with_suffix(".json").write_bytes(record)
    path = scenario_file("name: rec\nmodel: tiny\n")
    done = run_cli("validate", str(path), check=False)
    assert done.returncode == 0, done.stderr
    assert f"the cached model {own_cache}" in done.stderr and "building it again" in done.stderr
    assert json.loads(own_cache.with_suffix(".json").read_text())["stamp"]["sha256"] == sha256(
        own_cache
    )
    again = run_cli("validate", str(path))
    assert "building it again" not in again.stderr  # repaired once, for good


def test_a_damaged_cached_model_is_rebuilt_before_any_worker_loads_it(
    own_cache, scenario_file, tmp_path
):
    intact = sha256(own_cache)
    stat = own_cache.stat()
    with open(own_cache, "r+b") as model:  # damaged in place: same size, same mtime
        model.seek(stat.st_size // 3)
        model.write(b"\xff" * 512)
    os.utime(own_cache, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    path = scenario_file("name: damaged\nmodel: tiny\niterations: 20\n")
    done = run_cli("run", str(path), "--out", str(tmp_path / "run"), check=False)
    assert done.returncode == 0, done.stderr
    assert "does not match its recorded sha256: building it again" in done.stderr
    assert sha256(own_cache) == intact
    rows = read_iterations(tmp_path / "run")
    assert len(rows) == 20 and set(rows.status) == {"ok"}
    assert read_events(tmp_path / "run") is None  # no worker died of it


def test_a_cache_path_that_is_a_file_is_a_clear_error(tmp_path, monkeypatch):
    blocker = tmp_path / "cache"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MNN_STRESS_CACHE", str(blocker))
    done = run_cli("models", check=False)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"{blocker}: is a file, not a folder" in done.stderr
    assert "MNN_STRESS_CACHE" in done.stderr


def test_a_home_that_does_not_exist_is_refused_not_made(tmp_path, monkeypatch):
    """A cron job or a service with ``HOME=/nonexistent``: the default cache would make a
    home folder (as root, anywhere); it is a clear error naming MNN_STRESS_CACHE instead."""
    home = tmp_path / "no-such-home"
    monkeypatch.delenv("MNN_STRESS_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(home))
    done = run_cli("models", check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert f"the home folder {home} does not exist" in done.stderr
    assert "fix: set MNN_STRESS_CACHE to a folder" in done.stderr
    assert not home.exists()


@pytest.mark.skipif(shutil.which("setpriv") is None or os.getuid() != 0, reason="needs root")
def test_a_user_unknown_to_passwd_without_home_is_told_to_set_the_cache_var():
    """``docker run -u 12345`` (no HOME, no /etc/passwd entry: Path.home() raises): with
    MNN_STRESS_CACHE the cache is used; without, a clear error; a bug is still reported
    (in the temporary folder). Each was a traceback and exit 1 ("findings" to cron)."""
    import tempfile

    shared = Path(tempfile.mkdtemp(prefix="mnn-stress-nobody-"))
    try:
        shared.chmod(0o777)
        as_nobody = ["setpriv", "--reuid", "12345", "--regid", "12345", "--clear-groups"]
        env = {k: v for k, v in os.environ.items() if k not in ("HOME", "MNN_STRESS_CACHE")}
        env["TMPDIR"] = str(shared)

        def envs_list(**extra: str) -> subprocess.CompletedProcess:
            command = [*as_nobody, sys.executable, "-m", "stress", "envs", "list"]
            return subprocess.run(
                command, cwd=REPO, capture_output=True, text=True, env={**env, **extra}
            )

        assert envs_list(MNN_STRESS_CACHE=str(shared / "cache")).returncode == 0
        done = envs_list()
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert "no home folder for the cache: HOME is unset" in done.stderr
        done = envs_list(MNN_STRESS_TEST_BUG="command")
        assert done.returncode == 70, done.stderr
        assert list(shared.glob("bug-*-envs-list-*.txt")), done.stderr
    finally:
        shutil.rmtree(shared)


def test_the_cache_follows_xdg_cache_home_when_absolute(tmp_path, monkeypatch):
    from stress.cache_root import cache_dir

    monkeypatch.delenv("MNN_STRESS_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "mnn-stress"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/xdg")  # invalid by the spec: ignored
    assert cache_dir() == tmp_path / "home" / ".cache" / "mnn-stress"
    monkeypatch.setenv("MNN_STRESS_CACHE", str(tmp_path / "own"))
    assert cache_dir() == tmp_path / "own"


def test_a_cache_folder_this_user_cannot_write_is_a_clear_error(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o555)
    monkeypatch.setenv("MNN_STRESS_CACHE", str(cache))
    done = run_cli_bound_by_permissions("models")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"{cache}/models/mnn-" in done.stderr and "Permission denied" in done.stderr
    assert "MNN_STRESS_CACHE" in done.stderr


def _limit_file_size(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.integration
def test_a_full_disk_while_building_says_so_and_leaves_nothing_behind(
    tmp_path, monkeypatch, scenario_file
):
    """A file-size limit (``ulimit -f``) stands in for a full disk, portably: MNN's writer
    fails the same way (and then crashes on the model it could not finish)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("MNN_STRESS_CACHE", str(cache))
    path = scenario_file("name: full\nmodel: deep\n")  # a 400 KiB model
    done = subprocess.run(
        [sys.executable, "-m", "stress", "validate", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_limit_file_size(64 << 10),
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"{cache}/models/mnn-" in done.stderr
    assert "cannot write to the model cache: File too large" in done.stderr
    assert "MiB free on" in done.stderr and "ulimit -f" in done.stderr
    assert [p for p in cache.rglob("*") if p.is_file()] == []  # no half model, no record
    again = run_cli("validate", str(path))
    assert "building it again" not in again.stderr


@pytest.mark.integration
def test_a_disk_that_fills_between_model_and_record_leaves_no_empty_record(
    tmp_path, monkeypatch, scenario_file
):
    """The reported failure itself, on a real full file system (skipped where tmpfs cannot be
    mounted): room for the model but not for its record once left a 0-byte record."""
    from tests.records.test_rundir import fill, small_filesystem

    path = scenario_file("name: tight\nmodel: tiny\n")  # a 4.7 KiB model: two pages
    with small_filesystem(tmp_path / "disk", "1m") as disk:
        cache = disk / "cache"
        monkeypatch.setenv("MNN_STRESS_CACHE", str(cache))
        (cache / "models").mkdir(parents=True)
        (disk / "spare").write_bytes(b"\0" * 8192)
        fill(disk)
        (disk / "spare").unlink()  # room for the model's two pages, none for its record
        done = run_cli("validate", str(path), check=False)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
        assert "cannot write to the model cache: No space left on device" in done.stderr
        assert f"MiB free on {disk}" in done.stderr
        assert not list(cache.rglob("*.json")) and not list(cache.rglob(".*"))
        (disk / "filler").unlink()
        again = run_cli("validate", str(path))
        assert "has no record of its size and sha256: building it again" in again.stderr
        assert json.loads(next(cache.rglob("*.json")).read_text())["stamp"]["size"] > 0
