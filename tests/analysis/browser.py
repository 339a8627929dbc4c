"""A page rendered by headless Chromium (Debian's package), driven over the DevTools protocol
on a pipe (``--remote-debugging-pipe``: no port, no dependency): what it looked like, what it
asked the network for, and what went wrong in its console."""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import signal
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",  # as root in a container
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # the browser's own fetches, refused, would flood its log
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # a container's small /dev/shm would crash a tall page
    "--remote-debugging-pipe",  # commands on fd 3, replies on fd 4
]
PNG = b"\x89PNG\r\n\x1a\n"
_SVG_SIZES = (
    "JSON.stringify([...document.querySelectorAll('svg')]"
    ".map(s => [s.getBoundingClientRect().width, s.getBoundingClientRect().height]))"
)


@dataclass
class Rendered:
    """What the browser made of a page."""

    png: bytes  # a screenshot of the whole page
    requests: list[str]  # every URL the page asked for, its own included
    problems: list[str]  # console errors and warnings, uncaught exceptions, failed loads
    svg_sizes: list[tuple[float, float]]  # CSS pixels of each plot as laid out

    def png_size(self) -> tuple[int, int]:
        assert self.png.startswith(PNG), self.png[:16]
        return struct.unpack(">II", self.png[16:24])


def render(page: Path, width: int = 1400, timeout_s: float = 120) -> Rendered:
    """Load ``page`` at ``width`` CSS pixels and wait for its load event; ``timeout_s`` bounds
    the whole visit (generous: a loaded machine starts Chromium slowly)."""
    with _chromium(time.monotonic() + timeout_s) as browser:
        tab = browser.open(page, width)
        height = browser.send("Page.getLayoutMetrics", tab)["cssContentSize"]["height"]
        clip = {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}
        shot = browser.send("Page.captureScreenshot", tab, clip=clip, **_WHOLE)
        sizes = browser.send("Runtime.evaluate", tab, expression=_SVG_SIZES)
        events = browser.events
    return Rendered(
        png=base64.b64decode(shot["data"]),
        requests=[e["params"]["request"]["url"] for e in _named(events, "requestWillBeSent")],
        problems=_problems(events),
        svg_sizes=[tuple(size) for size in json.loads(sizes["result"]["value"])],
    )


_WHOLE = {"format": "png", "captureBeyondViewport": True}


def _named(events: list[dict], name: str) -> list[dict]:
    return [e for e in events if e.get("method", "").endswith(f".{name}")]


def _problems(events: list[dict]) -> list[str]:
    """Console errors and warnings, uncaught exceptions, and the browser's own log of the page
    (failed loads, blocked content) at warning or worse."""
    found = [
        f"console.{e['params']['type']}: {[a.get('value') for a in e['params']['args']]}"
        for e in _named(events, "consoleAPICalled")
        if e["params"]["type"] in ("error", "warning", "assert")
    ]
    found += [
        f"uncaught: {e['params']['exceptionDetails'].get('exception', {}).get('description')}"
        for e in _named(events, "exceptionThrown")
    ]
    found += [
        f"log {e['params']['entry']['level']}: {e['params']['entry']['text']}"
        for e in _named(events, "entryAdded")
        if e["params"]["entry"]["level"] in ("error", "warning")
    ]
    return found


@contextmanager
def _chromium(deadline: float) -> Iterator[_Pipe]:
    """Chromium started on a fresh profile, to be sent commands; closed and reaped on leaving
    (its process group killed when it does not close by the deadline), its profile removed."""
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        yield from _started(Path(profile), deadline)


def _started(profile: Path, deadline: float) -> Iterator[_Pipe]:
    commands_read, commands = os.pipe()
    replies, replies_write = os.pipe()
    log = (profile / "chromium.log").open("wb")
    # bash puts the pipe's ends where Chromium looks for them, then becomes Chromium
    onto_3_and_4 = f'exec "$0" "$@" 3<&{commands_read} 4>&{replies_write}'
    browser = [CHROMIUM or "chromium", *FLAGS, f"--user-data-dir={profile / 'data'}"]
    process = subprocess.Popen(
        ["bash", "-c", onto_3_and_4, *browser, "about:blank"],  # dash: fds 0-9 only
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        pass_fds=(commands_read, replies_write),
        start_new_session=True,  # its renderers with it: one group to kill
    )
    os.close(commands_read)
    os.close(replies_write)
    pipe = _Pipe(commands, replies, deadline, profile / "chromium.log")
    try:
        yield pipe
        pipe.send("Browser.close")
        process.wait(timeout=max(deadline - time.monotonic(), 10))
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        os.close(commands)
        os.close(replies)
        log.close()


class _Pipe:
    """DevTools messages over the pipe: JSON, each ended by a NUL byte. Events (messages
    without an id) are kept in ``events``, in the order they came."""

    def __init__(self, commands: int, replies: int, deadline: float, log: Path) -> None:
        self.commands, self.replies, self.deadline, self.log = commands, replies, deadline, log
        self.buffer, self.last_id = b"", 0
        self.events: list[dict] = []

    def open(self, page: Path, width: int) -> str:
        """A new tab showing ``page`` at ``width`` CSS pixels, once loaded: its session id."""
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        tab = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Network", "Runtime", "Log"):
            self.send(f"{domain}.enable", tab)
        screen = {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False}
        self.send("Emulation.setDeviceMetricsOverride", tab, **screen)
        self.send("Page.navigate", tab, url=page.as_uri())
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            self.events.append(self._receive())
        return tab

    def send(self, method: str, session: str | None = None, **params: Any) -> dict:
        self.last_id += 1
        message = {"id": self.last_id, "method": method, "params": params}
        message |= {"sessionId": session} if session else {}
        os.write(self.commands, json.dumps(message).encode() + b"\0")
        while (reply := self._receive()).get("id") != self.last_id:
            self.events.append(reply)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def _receive(self) -> dict:
        while b"\0" not in self.buffer:
            left = max(self.deadline - time.monotonic(), 0)
            ready, _, _ = select.select([self.replies], [], [], left)
            chunk = os.read(self.replies, 1 << 20) if ready else None
            if not chunk:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise TimeoutError(f"chromium: no reply in time or gone; its log ends:\n{tail}")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)
