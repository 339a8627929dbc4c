"""A Ctrl-C ends a command even when the main thread does not get to notice it.

Python acts on a signal only when its main thread runs Python code. A command stuck in native
code that never looks (a DuckDB query on a loaded machine was seen to ignore Ctrl-C for a
minute and more) would not end at all. The C-level handler still writes each signal to a
wakeup descriptor at once: a watchdog thread reads it, and when Python's own handler is the one
in place (outside a run, which handles its own signals) and the command is still there
``GRACE_S`` later, ends it with 130."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

from stress.exit_codes import ExitCode

GRACE_S = 5.0  # for the KeyboardInterrupt's own way out: a query's cleanup, a child killed
_SAID = f"interrupted (it had not stopped {GRACE_S:g} s after Ctrl-C)\n"


_armed: list[bool] = []


def watch() -> None:
    """Arm the watchdog for this process (main thread only; once)."""
    if _armed or threading.current_thread() is not threading.main_thread():
        return
    _armed.append(True)
    read, write = os.pipe()
    os.set_blocking(write, False)
    previous = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    if previous != -1:  # someone else's (an embedding application): left to them
        signal.set_wakeup_fd(previous)
        os.close(read)
        os.close(write)
        return
    threading.Thread(target=_watchdog, args=(read,), daemon=True, name="ctrl-c").start()


def _watchdog(read: int) -> None:
    while True:
        if signal.SIGINT in os.read(read, 64) and _python_handles_ctrl_c():
            time.sleep(GRACE_S)
            if _python_handles_ctrl_c():
                with contextlib.suppress(OSError):
                    os.write(2, _SAID.encode())
                os._exit(ExitCode.INTERRUPTED)


def _python_handles_ctrl_c() -> bool:
    return signal.getsignal(signal.SIGINT) is signal.default_int_handler
