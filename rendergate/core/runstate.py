"""What the processes of one run (pytest-xdist's controller and its workers) share on this machine:
for each variant, the target one worker opened for all of them (its kind and handle, the image
it runs) or the one line saying why it could not be opened. A variant's lock makes the first
worker that needs it open it while the others wait, then find it recorded.

It lives in a folder of the system's temporary directory named after the run; the run's owner
removes it, with the targets recorded in it, when the run ends.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class RunState:
    def __init__(self, run_id: str):
        self.folder = Path(tempfile.gettempdir()) / f"rendergate-{run_id}"

    def _file(self, key: str, suffix: str) -> Path:
        return self.folder / (re.sub(r"[^A-Za-z0-9_.@-]+", "_", key) + suffix)

    @contextmanager
    def claimed(self, key: str) -> Iterator[dict | None]:
        """Hold the variant's lock; yields what was recorded for it, None when nobody opened it yet."""
        self.folder.mkdir(exist_ok=True)
        with open(self._file(key, ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            path = self._file(key, ".json")
            yield json.loads(path.read_text()) if path.is_file() else None

    def lock_file(self, name: str) -> Path:
        """A lock file of the run's own (the machine's share, a GPU slot), removed with the run."""
        self.folder.mkdir(exist_ok=True)
        return self.folder / name

    def record(self, key: str, state: dict) -> None:
        """Record the variant's target (call while holding its claim)."""
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".state-")
        with os.fdopen(fd, "w") as f:
            json.dump(state, f)
        os.replace(tmp, self._file(key, ".json"))

    def recorded(self) -> list[dict]:
        """Every variant's record, for releasing the targets at the end."""
        return [json.loads(p.read_text()) for p in sorted(self.folder.glob("*.json"))] if self.folder.is_dir() else []

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def interrupt_on_sigterm() -> None:
    """SIGTERM (CI cancelling a job) unwinds like Ctrl-C, through the cleanup of whoever runs.
    Outside the main thread signals cannot be set: atexit and finally blocks still cover a clean exit."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    try:
        signal.signal(signal.SIGTERM, interrupt)
    except ValueError:
        pass
