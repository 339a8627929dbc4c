"""Reaching a Ray cluster for ``run --ray``: an address (``auto``: the cluster this machine
belongs to), or ``local``: a cluster of this machine alone, inside a network namespace that has
only loopback, so Ray can talk to nothing but 127.0.0.1.

Ray is an optional extra (``pip install 'mnn-stress[ray]'``): without it ``--ray`` says how to
install it, and nothing else needs it.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import struct
import sys
import tempfile
from collections.abc import Iterator
from types import ModuleType

from stress.errors import StressError, first_line

LOCAL = "local"
REACH_S = 5.0  # for the head's port to answer
INSIDE_VAR = "MNN_STRESS_PRIVATE_NETWORK"  # set once ``--ray local`` re-ran itself inside one
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1


def check_installed() -> None:
    """An error that says how to install Ray, where it is not (without importing it: its
    environment for ``local`` is set first)."""
    if importlib.util.find_spec("ray") is None:
        raise StressError(
            "--ray needs Ray, which is not installed here",
            fix="pip install 'mnn-stress[ray]' (the same on every node of the cluster)",
        )


def check_address(address: str) -> None:
    """Refuse what cannot be a Ray address, before anything runs."""
    if address in (LOCAL, "auto"):
        return
    if address.startswith("ray://"):
        raise StressError(
            f"--ray {address}: Ray Client addresses (ray://) are not supported: the driver "
            "must be a process of the cluster, its nodes' coordinators ship it their parts",
            fix="run mnn-stress on a node of the cluster with --ray auto, or give HOST:PORT of "
            "the head (as `ray start --head` printed it)",
        )
    host, _, port = address.rpartition(":")
    if not host or host != host.strip() or not port.isdigit() or not 0 < int(port) < 65536:
        raise StressError(
            f"--ray {address!r} is not a Ray address",
            fix="give HOST:PORT of the head node (as `ray start --head` printed it), `auto` "
            "on a node of the cluster, or `local` for a cluster of this machine alone",
        )


def _check_reachable(address: str) -> None:
    """Something must answer at HOST:PORT (ray.init would wait there for ever)."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=REACH_S).close()
    except OSError as exc:
        raise StressError(
            f"--ray {address}: nothing answers there ({exc.strerror or exc})",
            fix="start the cluster's head there (`ray start --head --port PORT`), or give the "
            "address it printed",
        ) from exc


def only_loopback() -> bool:
    """Whether this process's network has no interface but loopback."""
    return all(name == "lo" for _, name in socket.if_nameindex())


def enter_private_network(argv: list[str]) -> None:
    """Run this command again (exec: same pid, terminal and signals) inside a network namespace
    of its own, unless it is in one already; there, bring loopback up."""
    # a token of the local cluster's own, set before Ray is imported: nothing left in ~/.ray
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    if os.environ.get(INSIDE_VAR) or only_loopback():
        _loopback_up()
        return
    unshare = shutil.which("unshare")
    if unshare is None:
        raise StressError(
            "--ray local runs its cluster in a network namespace of its own (loopback only), "
            "and `unshare` (util-linux) is not installed",
            fix="install util-linux, or start a cluster yourself and give its address to --ray",
        )
    own = ["--map-root-user"] if os.geteuid() != 0 else []
    os.environ[INSIDE_VAR] = "1"
    os.execv(unshare, [unshare, "--net", *own, sys.executable, "-m", "stress", *argv])


@contextlib.contextmanager
def _without_the_probe_warning() -> Iterator[None]:
    """Ray's native code warns on stderr that it could not reach 8.8.8.8 to find its own
    address (it cannot, by design, in ``local``'s private network): that line is left out,
    every other line it writes meanwhile is passed on."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            for line in caught.read().decode(errors="replace").splitlines(keepends=True):
                if "Failed to determine local IP via external connectivity" not in line:
                    sys.stderr.write(line)


def _joined(ray: ModuleType, address: str, options: dict[str, object]) -> None:
    """``ray.init`` on an existing cluster; what Ray refuses said as an error of ours."""
    try:
        ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise StressError(
            f"--ray {address}: Ray could not join the cluster: {first_line(exc)}",
            fix="check the address (`ray status` on a node prints it) and, if the cluster "
            "uses token authentication, RAY_AUTH_TOKEN",
        ) from exc


def _loopback_up() -> None:
    """``ip link set lo up``, without needing ``ip``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        if not flags & _IFF_UP:
            try:
                fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))
            except OSError as exc:
                raise StressError(
                    f"--ray local: cannot bring loopback up in its network namespace: {exc}",
                    fix="run as root, or where unprivileged user namespaces are allowed",
                ) from exc


@contextlib.contextmanager
def connected(address: str, cpus: int | None) -> Iterator[ModuleType]:
    """Ray, initialised on ``address`` until the block ends: ``local`` starts a cluster of
    this machine alone (in the private network ``enter_private_network`` made), with ``cpus``
    CPUs, and stops it after."""
    check_installed()
    if address == LOCAL:
        os.environ.pop("RAY_ADDRESS", None)  # ray.init would join that cluster instead
    elif address != "auto":
        _check_reachable(address)
    import ray

    quiet = {"log_to_driver": False, "logging_level": "ERROR", "configure_logging": True}
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # nothing reported to anyone
    # a local cluster's session (logs, sockets) in a folder of its own, removed after it
    scratch = tempfile.mkdtemp(prefix="mnn-stress-ray-") if address == LOCAL else None
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        with _without_the_probe_warning():
            if scratch is not None:
                ray.init(
                    _node_ip_address="127.0.0.1",
                    _temp_dir=scratch,
                    num_cpus=cpus or os.cpu_count(),
                    include_dashboard=False,
                    **quiet,
                )
            else:
                _joined(ray, address, quiet)
        for number, handler in handlers.items():  # ray.init made SIGTERM a sys.exit
            signal.signal(number, handler)
        try:
            yield ray
        finally:
            ray.shutdown()
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
