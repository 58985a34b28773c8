"""One ``cratedigger run`` per data directory at a time.

A second run started on the same data directory while one runs fails at once with a message
naming the first (its pid, host and start time), instead of redoing the same work beside it.
The lock is an ``flock`` on ``<data dir>/.cratedigger-run.lock``: the kernel releases it when
the holder ends, even by ``kill -9``, so a killed run never blocks the next one. Runs launched
from the Dagster UI meanwhile are kept apart step by step by the instance's pools.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = ".cratedigger-run.lock"


class RunInProgressError(RuntimeError):
    """Another ``cratedigger run`` holds the data directory."""


@contextmanager
def run_lock(data_dir: str | Path) -> Iterator[Path]:
    """Hold the data directory's run lock for the block; raise :class:`RunInProgressError`
    at once when another process holds it. Yields the lock file's path."""
    directory = Path(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_NAME
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "a process that has not written its name yet"
        handle.close()
        raise RunInProgressError(
            f"another `cratedigger run` is already running on {directory} ({holder}); wait "
            "for it to finish or stop it, then run again."
        ) from None
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {socket.gethostname()}, started {started}")
    handle.flush()
    try:
        yield path
    finally:
        handle.close()  # releases the lock
