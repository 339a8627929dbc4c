"""``run --ray``: the variants over the nodes of a real Ray cluster on this machine, inside a
network namespace that has only loopback (a head and a second node, each with a resource of
its own), what they record merged into one run directory."""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest

from tests.conftest import REPO, read_events, run_cli

pytestmark = pytest.mark.integration

PORT = 6379  # the namespace's own loopback: nothing else listens there


@dataclass(frozen=True)
class Cluster:
    enter: list[str]  # the command prefix that runs a command inside its network namespace
    address: str
    namespace: str  # the namespace's identity (readlink /proc/PID/ns/net)
    env: dict[str, str]

    def run(
        self, *args: str, timeout: float = 300, fault: str | None = None
    ) -> subprocess.CompletedProcess:
        """``python -m stress ARGS`` inside the namespace (the driver reaches 127.0.0.1 there);
        ``fault`` sets the test-only fault injection."""
        command = [*self.enter, sys.executable, "-m", "stress", *args]
        env = {**self.env, "MNN_STRESS_TEST_FAULT": fault} if fault else self.env
        return subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO
        )

    def start(self, *args: str) -> subprocess.Popen:
        command = [*self.enter, sys.executable, "-m", "stress", *args]
        return subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env,
            cwd=REPO,
        )  # fmt: skip

    def processes(self) -> list[psutil.Process]:
        """Every process inside the namespace."""
        found = []
        for process in psutil.process_iter():
            try:
                if os.readlink(f"/proc/{process.pid}/ns/net") == self.namespace:
                    found.append(process)
            except OSError:
                continue
        return found


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A head (resource ``nodeA``) and a second node (``nodeB``), one CPU each."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'mnn-stress[ray]')")
    if os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("nsenter")):
        pytest.skip("a private network namespace needs root, unshare and nsenter")
    holder = subprocess.Popen(
        ["unshare", "--net", "sh", "-c", "ip link set lo up && exec sleep 100000"]
    )
    ours = os.readlink("/proc/self/ns/net")
    deadline = time.monotonic() + 10
    while os.readlink(f"/proc/{holder.pid}/ns/net") == ours and time.monotonic() < deadline:
        time.sleep(0.05)
    namespace = os.readlink(f"/proc/{holder.pid}/ns/net")
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths are long
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "RAY_USAGE_STATS_ENABLED": "0",
        "OPENBLAS_NUM_THREADS": "1",
        # the cluster's own token, as a real cluster's users set it (nothing in ~/.ray)
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
    }
    enter = ["nsenter", f"--net=/proc/{holder.pid}/ns/net"]
    found = Cluster(enter, f"127.0.0.1:{PORT}", namespace, env)
    ray = str(Path(sys.executable).parent / "ray")
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--disable-usage-stats"]
    try:
        time.sleep(0.2)  # `ip link set lo up` done
        for node in (
            ["--head", "--port", str(PORT), "--include-dashboard", "false", "--temp-dir", temp],
            ["--address", found.address],
        ):
            resource = '{"nodeA": 1}' if "--head" in node else '{"nodeB": 1}'
            started = subprocess.run(
                [*enter, ray, "start", *node, *common, "--resources", resource],
                capture_output=True, text=True, env=env, timeout=120,
            )  # fmt: skip
            assert started.returncode == 0, started.stdout + started.stderr
        yield found
    finally:
        for process in found.processes():
            if process.pid != holder.pid:
                process.kill()
        holder.kill()
        holder.wait()
        shutil.rmtree(temp, ignore_errors=True)


def _rows(out: Path):
    return ds.dataset(str(out / "iterations"), format="parquet").to_table(
        columns=["variant_id", "host", "thread", "iteration", "status"]
    )


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


SCENARIO = """\
name: spread
model: tiny
seed: 0
iterations: 300
timeout: 20s
max_crashes: 1
matrix:
  api: [session, module]
  threads: [1, 2]
"""


def test_a_run_spread_over_two_nodes_is_the_run_one_machine_makes(cluster, tmp_path):
    """A crashing variant and clean ones: the same variant ids and row counts as on one
    machine, every row naming its node, the crash an event with its cause, both nodes used."""
    path = tmp_path / "spread.yaml"
    path.write_text(SCENARIO)
    dead = _a_dead_pid()
    stale = Path(tempfile.mkdtemp(prefix="mnn-stress-node-stale-"))  # a lost node's, earlier
    (stale / "OWNER").write_text(str(dead))
    spread = tmp_path / "spread"
    done = cluster.run("run", str(path), "--out", str(spread), "--ray", cluster.address,
                       "--progress-every", "1s", fault="segv@40?threads=1")  # fmt: skip
    assert done.returncode == 0, done.stderr
    alone = tmp_path / "alone"
    run_cli("run", str(path), "--out", str(alone), fault="segv@40?threads=1")

    nodes = _manifest(spread)["nodes"]
    ray_hosts = {n["host"] for n in nodes if n.get("ray_node_id")}
    assert len(ray_hosts) == 2 and all(n["cpu_model"] and n["kernel"] for n in nodes)
    assert {n["address"] for n in nodes if n.get("ray_node_id")} == {"127.0.0.1"}
    rows, single = _rows(spread), _rows(alone)
    assert set(rows["host"].to_pylist()) == ray_hosts  # both nodes ran variants
    progress = [line for line in (spread / "run.log").read_text().splitlines() if "running" in line]
    assert all(f"; {host}: " in progress[-1] for host in ray_hosts)  # the nodes, as they ran
    by_variant = collections.Counter(rows["variant_id"].to_pylist())
    alone_by_variant = collections.Counter(single["variant_id"].to_pylist())
    assert set(by_variant) == set(alone_by_variant)
    crashed = set(read_events(alone).query("kind == 'crash'").variant_id)
    assert by_variant == alone_by_variant  # one thread where it crashes: no drift between threads
    keys = list(zip(*(rows[c].to_pylist() for c in ("variant_id", "thread", "iteration"))))
    assert len(keys) == len(set(keys))  # no row twice: part names never collided
    assert not stale.exists()  # swept by the next node coordinator there
    logs = {p.name for p in (spread / "logs").glob("*.log")}  # shipped at each node's end
    workers = set(zip(rows["variant_id"].to_pylist(), _rows_worker_ids(spread)))
    assert {f"{vid}-w{wid}.log" for vid, wid in workers} <= logs
    events = read_events(spread)
    crashes = events[events.kind == "crash"]
    assert len(crashes) >= 1 and set(crashes.signal) == {"SIGSEGV"}
    assert set(crashes.host) <= ray_hosts
    assert set(crashes.variant_id) == crashed
    summary = json.loads(run_cli("summary", str(spread), "--json").stdout)
    assert {v["variant_id"] for v in summary["variants"]} == set(by_variant)


def test_sigterm_stops_a_spread_run_and_keeps_what_reached_the_driver(cluster, tmp_path):
    """Ray's init makes SIGTERM a bare exit of the driver; the run's own handling is put back:
    the nodes stop their workers, the run ends interrupted with its rows and can be read."""
    path = tmp_path / "endless.yaml"
    path.write_text(
        "name: endless\nmodel: tiny\nduration: 120s\nmatrix:\n  api: [session, module]\n"
    )
    out = tmp_path / "run"
    returncode, stderr, took = _acted_on(
        cluster, path, out, lambda run: run.send_signal(signal.SIGTERM)
    )
    assert returncode == 130, stderr
    assert "Traceback" not in stderr
    manifest = _manifest(out)
    assert manifest["status"] == "interrupted"
    assert {v["status"] for v in manifest["variants"].values()} == {"interrupted"}
    assert _rows(out).num_rows > 0 and took < 20, f"took {took:.1f} s"
    summary = run_cli("summary", str(out), "--json")
    assert len(json.loads(summary.stdout)["variants"]) == 2


def test_node_all_compares_the_machines_and_attribution_names_the_node(cluster, tmp_path):
    """``node: all``: each variant once on every node, each run where it was placed; a fault
    planted on one node's variants only is attributed to that node."""
    path = tmp_path / "machines.yaml"
    path.write_text(
        "name: machines\nmodel: tiny\nseed: 0\niterations: 100\n"
        "matrix:\n  api: [session, module]\n  node: all\n"
    )
    clean = tmp_path / "clean"
    done = cluster.run("run", str(path), "--out", str(clean), "--ray", cluster.address)
    assert done.returncode == 0, done.stderr
    hosts = sorted(n["host"] for n in _manifest(clean)["nodes"] if n.get("ray_node_id"))
    variants = _manifest(clean)["variants"]
    assert sorted(v["params"]["node"] for v in variants.values()) == sorted(hosts * 2)
    rows = _rows(clean).to_pydict()
    for vid, host in zip(rows["variant_id"], rows["host"]):
        assert variants[vid]["params"]["node"] == host  # run where it was placed
    blamed = tmp_path / "blamed"
    done = cluster.run("run", str(path), "--out", str(blamed), "--ray", cluster.address,
                       fault=f"perturb@0+?node={hosts[1]}")  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(run_cli("summary", str(blamed), "--json").stdout)
    labels = {v["label"]: v["verdict"] for v in summary["variants"]}
    assert labels[f"api=session node={hosts[0]}"] == "ok"
    assert labels[f"api=module node={hosts[1]}"] != "ok"
    assert summary["attribution"]["mismatch"]["explanation"] == f"node={hosts[1]}"
    manifest = _manifest(clean)  # as if killed: a run placed on nodes cannot go on on one
    manifest["status"] = "interrupted"
    (clean / "manifest.json").write_text(json.dumps(manifest))
    resumed = run_cli("run", "--resume", str(clean), check=False)
    assert resumed.returncode == 2 and "were placed on cluster nodes (node: " in resumed.stderr


def test_placement_keeps_a_scenario_on_the_nodes_with_its_resources(cluster, tmp_path):
    """Two scenarios in one run: one asks for nodeB's resource, the other goes anywhere."""
    (tmp_path / "pinned.yaml").write_text(
        "name: pinned\nmodel: tiny\niterations: 200\nplacement: {resources: {nodeB: 1}}\n"
        "matrix:\n  api: [session, module]\n  threads: [1, 2]\n"
    )
    (tmp_path / "free.yaml").write_text("name: free\nmodel: tiny\niterations: 200\n")
    out = tmp_path / "run"
    done = cluster.run("run", str(tmp_path / "pinned.yaml"), str(tmp_path / "free.yaml"),
                       "--out", str(out), "--ray", cluster.address)  # fmt: skip
    assert done.returncode == 0, done.stderr
    node_b = [n["host"] for n in _manifest(out)["nodes"] if n.get("ray_node_id")]
    rows = ds.dataset(str(out / "iterations"), format="parquet").to_table(
        columns=["scenario", "host"]
    )
    hosts = collections.defaultdict(set)
    for scenario, host in zip(rows["scenario"].to_pylist(), rows["host"].to_pylist()):
        hosts[scenario].add(host)
    assert len(hosts["pinned"]) == 1 and hosts["pinned"] <= set(node_b)
    assert len(rows) == 200 * 6 + 200
    # a resource no node has is refused before anything runs
    (tmp_path / "nowhere.yaml").write_text(
        "name: nowhere\nmodel: tiny\niterations: 5\nplacement: {resources: {gpu9: 1}}\n"
    )
    nowhere = cluster.run("run", str(tmp_path / "nowhere.yaml"), "--ray", cluster.address)
    assert nowhere.returncode == 2 and "no node of the cluster has resources" in nowhere.stderr


def test_budgets_and_caps_count_the_whole_cluster(cluster, tmp_path):
    """--duration is shared by every worker of every node (two of two each here: each variant
    gets the whole 6 s, not half); a scenario's ``workers: 1`` holds across the nodes."""
    free = tmp_path / "free.yaml"
    free.write_text(
        "name: free\nmodel: tiny\nmatrix:\n  api: [session, module]\n  threads: [1, 2]\n"
    )
    out = tmp_path / "shared"
    done = cluster.run("run", str(free), "--out", str(out), "--duration", "6s", "--workers", "2",
                       "--ray", cluster.address)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert {v["duration_s"] for v in _manifest(out)["variants"].values()} == {6.0}
    capped = tmp_path / "capped.yaml"
    capped.write_text(
        "name: capped\nmodel: tiny\niterations: 3000\nworkers: 1\n"
        "matrix:\n  api: [session, module]\n"
    )
    out = tmp_path / "capped"
    done = cluster.run("run", str(capped), "--out", str(out), "--ray", cluster.address)
    assert done.returncode == 0, done.stderr
    spans = []
    table = ds.dataset(str(out / "iterations"), format="parquet").to_table(
        columns=["variant_id", "ts"]
    )
    for vid in set(table["variant_id"].to_pylist()):
        ts = table.filter(pc.equal(table["variant_id"], vid))["ts"]
        spans.append((pc.min(ts).value, pc.max(ts).value))
    (a0, a1), (b0, b1) = sorted(spans)
    assert a1 < b0  # one after the other, never at once


def test_a_node_lost_just_after_its_variants_ended_loses_none_of_their_rows(cluster, tmp_path):
    """Many short variants; nodeB's coordinator killed soon after they start: a variant it had
    finished but whose last rows it had not shipped yet goes on elsewhere, so every variant
    ends with every iteration exactly once (it was marked done with rows missing)."""
    path = tmp_path / "short.yaml"
    path.write_text(
        "name: short\nmodel: tiny\nseed: 0\niterations: 100\nmatrix:\n"
        "  api: [session, module]\n  num_thread: [1, 2, 4]\n  precision: [normal, low]\n"
        "  memory_mode: [normal, low]\n"
    )
    out = tmp_path / "run"
    returncode, stderr, _ = _acted_on(
        cluster, path, out, lambda run: _actor_on(cluster, "nodeB", run).kill()
    )
    assert returncode == 0, stderr
    seen = _iterations_by_variant(out)
    assert len(seen) == 24 and all(its == list(range(100)) for its in seen.values())
    assert any(n.get("lost") for n in _manifest(out)["nodes"])


def test_a_frozen_node_does_not_hold_up_a_stop(cluster, tmp_path):
    """nodeB's coordinator stopped (SIGSTOP) mid-run, then Ctrl-C: the run ends all the same,
    the silent node given up as lost (and killed: it must not go on when thawed)."""
    path = tmp_path / "frozen.yaml"
    path.write_text(
        "name: frozen\nmodel: tiny\nduration: 120s\nmatrix:\n  api: [session, module]\n"
    )
    out = tmp_path / "run"
    frozen: list[psutil.Process] = []

    def freeze_then_stop(run: subprocess.Popen) -> None:
        frozen.append(_actor_on(cluster, "nodeB", run))
        frozen[0].suspend()
        time.sleep(1)
        run.send_signal(signal.SIGINT)

    returncode, stderr, took = _acted_on(cluster, path, out, freeze_then_stop)
    assert returncode == 130, stderr
    assert took < 40, f"took {took:.0f} s"  # 20 s of silence once stopping, then the end
    assert "did not answer for 20 s" in (out / "run.log").read_text()
    actor, gone = frozen[0], time.monotonic() + 30
    while actor.is_running() and actor.status() != psutil.STATUS_ZOMBIE and time.monotonic() < gone:
        time.sleep(0.2)
    assert not actor.is_running() or actor.status() == psutil.STATUS_ZOMBIE, actor.status()


def test_a_node_lost_mid_run_leaves_its_variants_to_the_other(cluster, tmp_path):
    """nodeB's raylet killed once its rows arrive: its variant goes on on nodeA from the last
    iteration received, every iteration recorded exactly once, the manifest names the loss.
    The last test of the cluster: nodeB does not come back."""
    path = tmp_path / "long.yaml"
    path.write_text(
        "name: long\nmodel: tiny\nseed: 0\niterations: 40000\ntimeout: 20s\n"
        "matrix:\n  api: [session, module]\n"
    )
    out = tmp_path / "run"
    raylet = _raylet_of(cluster, "nodeB")
    returncode, stderr, _ = _acted_on(
        cluster, path, out, lambda run: raylet.send_signal(signal.SIGKILL)
    )
    assert returncode == 0, stderr
    manifest = _manifest(out)
    assert manifest["status"] == "complete"
    lost = [n for n in manifest["nodes"] if n.get("lost")]
    assert len(lost) == 1
    seen = _iterations_by_variant(out)
    assert len(seen) == 2
    assert all(its == list(range(40000)) for its in seen.values())  # no gap, no duplicate
    assert "lost" in (out / "run.log").read_text()
    # Ray may list nodeB a while yet: a run started now goes on on nodeA, and ends
    again = cluster.run("run", str(path), "--out", str(tmp_path / "again"), "--iterations", "50",
                        "--ray", cluster.address, timeout=240)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert _rows(tmp_path / "again").num_rows == 100


def _acted_on(
    cluster: Cluster, path: Path, out: Path, act: Callable[[subprocess.Popen], object]
) -> tuple[int, str, float]:
    """Run ``path`` on the cluster into ``out``; once rows from both nodes are in (mid-run),
    ``act`` on the driver's process. Its exit status, its stderr, and the seconds it took to
    end after ``act``."""
    run = cluster.start("run", str(path), "--out", str(out), "--ray", cluster.address)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not _rows_from_two_nodes(out):
            time.sleep(0.05)
        assert run.poll() is None  # mid-run, not after it
        act(run)
        asked = time.monotonic()
        _, stderr = run.communicate(timeout=300)
        return run.returncode, stderr, time.monotonic() - asked
    finally:
        if run.poll() is None:
            run.kill()


def _iterations_by_variant(out: Path) -> dict[str, list[int]]:
    table = _rows(out).to_pydict()
    seen: dict[str, list[int]] = collections.defaultdict(list)
    for vid, iteration in zip(table["variant_id"], table["iteration"]):
        seen[vid].append(iteration)
    return {vid: sorted(iterations) for vid, iterations in seen.items()}


def _a_dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def _rows_worker_ids(out: Path) -> list[int]:
    table = ds.dataset(str(out / "iterations"), format="parquet").to_table(columns=["worker_id"])
    return table["worker_id"].to_pylist()


def _actor_on(
    cluster: Cluster, resource: str, run: subprocess.Popen, timeout: float = 60
) -> psutil.Process:
    """The NodeCoordinator actor's process on the node started with ``resource``, started by
    ``run`` (an earlier run's may still be ending)."""
    raylet, since = _raylet_of(cluster, resource), psutil.Process(run.pid).create_time()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in raylet.children(recursive=True):
            try:
                if "NodeCoordinator" in " ".join(child.cmdline()) and child.create_time() > since:
                    return child
            except psutil.Error:
                continue
        time.sleep(0.05)
    raise AssertionError(f"no NodeCoordinator on the node with {resource}")


def _raylet_of(cluster: Cluster, resource: str) -> psutil.Process:
    for process in cluster.processes():
        try:
            if process.name() == "raylet" and resource in " ".join(process.cmdline()):
                return process
        except psutil.Error:
            continue
    raise AssertionError(f"no raylet with {resource}")


def _rows_from_two_nodes(out: Path) -> bool:
    try:
        return len(set(_rows(out)["host"].to_pylist())) >= 2
    except (OSError, ValueError):
        return False


def test_ray_local_runs_a_cluster_of_this_machine_on_loopback_alone(
    scenario_file, tmp_path, monkeypatch
):
    """The command runs itself again in a network namespace of its own; Ray's token is its
    own too (nothing written to ~/.ray)."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'mnn-stress[ray]')")
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("a private network namespace needs root (or user namespaces) and unshare")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # another cluster's: not joined (was 70)
    path = scenario_file(
        "name: local\nmodel: tiny\niterations: 50\nmatrix:\n  api: [session, module]\n"
    )
    out = tmp_path / "run"
    done = run_cli("run", str(path), "--out", str(out), "--ray", "local")
    assert "8.8.8.8" not in done.stderr  # Ray's probe for an outside address: left out
    manifest = _manifest(out)
    assert manifest["status"] == "complete"
    (node,) = [n for n in manifest["nodes"] if n.get("ray_node_id")]
    assert node["address"] == "127.0.0.1"
    rows = _rows(out)
    assert rows.num_rows == 100 and set(rows["host"].to_pylist()) == {node["host"]}
    assert not (tmp_path / ".ray").exists()


@pytest.mark.parametrize(
    ("address", "said"),
    [
        ("nohost", "--ray 'nohost' is not a Ray address"),
        (" 127.0.0.1:6379", "is not a Ray address"),
        ("127.0.0.1:99999", "is not a Ray address"),
        ("ray://127.0.0.1:10001", "Ray Client addresses (ray://) are not supported"),
        ("127.0.0.1:1", "--ray 127.0.0.1:1: nothing answers there"),  # it hung in ray.init
    ],
)
def test_ray_refuses_what_it_cannot_reach_before_anything_runs(
    scenario_file, tmp_path, address, said
):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'mnn-stress[ray]')")
    path = scenario_file("name: nowhere\nmodel: tiny\niterations: 5\n")
    done = run_cli("run", str(path), "--out", str(tmp_path / "run"), "--ray", address, check=False)
    assert done.returncode == 2 and said in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()


class _FakeRay:
    """Just what ``ClusterCoordinator._fingerprint_nodes`` calls: ``wait`` (all ready), ``get``
    (a fake actor's answer or error), and ``exceptions.RayError``."""

    class exceptions:  # noqa: N801 - as Ray names it
        class RayError(Exception):
            pass

    @staticmethod
    def get(ref):
        if isinstance(ref.answer, Exception):
            raise ref.answer
        return ref.answer

    @staticmethod
    def wait(refs, num_returns, timeout):
        return refs, []


@dataclass(eq=False)
class _FakeActor:
    """Its ``node.remote()`` is the ref, which ``_FakeRay.get`` answers."""

    answer: object

    @property
    def node(self):
        return self

    def remote(self):
        return self


def test_nodes_that_cannot_start_or_differ_from_this_machine_are_named(tmp_path):
    """A node whose coordinator cannot start is left out, by name; one of another CPU is named
    as graded against this machine's reference; none starting fails the run."""
    from stress.coordinator.cluster.driver import ClusterCoordinator, _Node
    from stress.coordinator.cluster.slots import ClusterRun, NodeSlot
    from stress.coordinator.loop import Hooks, StopRequests
    from stress.records.nodes import fingerprint

    notes: list[str] = []
    here = fingerprint("here")
    arm = dataclasses.replace(fingerprint("arm"), machine="aarch64", cpu_model="Cortex-A76")
    died = _FakeRay.exceptions.RayError("The actor died unexpectedly\nmore")
    driver = ClusterCoordinator(
        ClusterRun(_FakeRay, []), "r", tmp_path, [], StopRequests(), None,  # type: ignore[arg-type]
        Hooks(on_note=notes.append), 0, lambda node: None,
    )  # fmt: skip
    driver.nodes = [_Node(_FakeActor(e), NodeSlot(e.host, "id", None, 1)) for e in (here, arm)]
    driver.nodes.append(_Node(_FakeActor(died), NodeSlot("gone", "id", None, 1)))
    driver._fingerprint_nodes()
    assert [n.lost for n in driver.nodes] == [None, None, "RayError: The actor died unexpectedly"]
    gone = "gone (RayError: The actor died unexpectedly)"
    assert notes[0] == f"mnn-stress could not start on node(s): {gone}"
    assert notes[1].startswith("node(s) arm differ from this machine") and len(notes) == 2
    assert driver.failure is None
    driver.nodes = [_Node(_FakeActor(died), NodeSlot("gone", "id", None, 1))]
    driver._fingerprint_nodes()
    assert driver.failure is not None and "could not start on any node" in driver.failure.message


def test_a_lost_nodes_variants_go_on_from_the_last_iteration_received(scenario_file, tmp_path):
    """What ``_lose`` does with a lost node's variants: one running goes back to the queue from
    the rows received; one it had finished whose rows had not all arrived goes back too (the
    helper's race: a 'complete' run with rows missing); one finished and fully received stays
    done; one pinned to the node is interrupted."""
    from stress.coordinator.cluster.driver import ClusterCoordinator, _Node
    from stress.coordinator.cluster.slots import ClusterRun, NodeSlot
    from stress.coordinator.loop import Hooks, StopRequests
    from stress.coordinator.plan import Budget, plan
    from stress.records.states import VariantStatus
    from stress.scenario import load_scenario

    text = "name: q\nmodel: tiny\niterations: 50\nmatrix:\n  api: [session, module]\n"
    text += "  threads: [1, 2]\n  node: [any, vm/b]\n"
    states = plan([load_scenario(scenario_file(text))], Budget(), 2, ["vm/a", "vm/b"])
    by = {
        (s.variant.params["api"], len(s.next_iterations), s.variant.params["node"]): s
        for s in states
    }
    running, whole = by[("session", 1, "any")], by[("session", 2, "any")]
    short, pinned = by[("module", 2, "any")], by[("module", 1, "vm/b")]
    notes: list[str] = []
    driver = ClusterCoordinator(
        ClusterRun(_FakeRay, []), "r", tmp_path, states, StopRequests(), None,  # type: ignore[arg-type]
        Hooks(on_note=notes.append), 0, lambda node: None,
    )  # fmt: skip
    driver.pending.clear()
    node = _Node(_FakeActor(None), NodeSlot("vm/b", "b", None, 2))
    driver.nodes = [node, _Node(_FakeActor(None), NodeSlot("vm/a", "a", None, 2))]
    for state, status, completed in (
        (running, VariantStatus.RUNNING, 30), (pinned, VariantStatus.RUNNING, 10),
        (whole, VariantStatus.DONE, 100), (short, VariantStatus.DONE, 100),
    ):  # fmt: skip
        state.status, state.completed = status, completed
    node.given = {running.variant.variant_id, pinned.variant.variant_id}
    node.done_here = {whole.variant.variant_id, short.variant.variant_id}
    for state, per_thread in ((running, [20]), (whole, [50, 50]), (short, [50, 41])):
        vid = state.variant.variant_id
        for thread, upto in enumerate(per_thread):
            driver.received[(vid, thread)] = upto
        driver.completed[vid] = sum(per_thread)
    driver._lose(node, RuntimeError("raylet gone"))
    assert running.status is VariantStatus.PENDING and running.next_iterations == [20]
    assert running.completed == 20 and running.node is None
    assert short.status is VariantStatus.PENDING and short.next_iterations == [50, 41]
    assert whole.status is VariantStatus.DONE
    assert pinned.status is VariantStatus.INTERRUPTED
    queued = {state.variant.variant_id for state in driver.pending}
    assert queued == {short.variant.variant_id, running.variant.variant_id}
    assert "2 of its variants go on" in notes[-1] and "1 interrupted" in notes[-1]
