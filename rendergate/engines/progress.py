"""Image builds and pulls reported as they happen: a build takes minutes, and a command that
prints nothing until it ends cannot be told from a hung one.

On a terminal each build or pull has one line that updates in place (a spinner, its current
step, the time so far). In a log (no terminal, a dumb one, or TTY_INTERACTIVE=0) each build
step is one plain line as it starts, and anything that goes quiet for 30 s gets a heartbeat
line, so that a CI log never stays silent for minutes. Builds in several threads at once (as
docker_engine.in_parallel runs them) each have their own line, or prefix each of their log lines
with their variant's name; lines are written whole, one at a time. Everything shown passes
through redact(). rich is imported only when a BuildProgress is made.

    with BuildProgress(stream=sys.stdout) as progress:
        engine.build(variant, log_dir, base_image, extra_ca, progress=progress)
        engine.pull(ref, progress=progress)
"""
from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, TextIO

from rendergate.core.redact import redact

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

HEARTBEAT_S = 30  # the longest a log stays silent while something is under way
INSTRUCTION_CHARS = 80  # a Dockerfile instruction is cut to this on a progress line


def duration(seconds: float) -> str:
    """A span as people say it: '4.2 s', '12 s', '3 min 31 s', '1 h 5 min'."""
    if seconds < 9.95:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def shortened(instruction: str, limit: int = INSTRUCTION_CHARS) -> str:
    """The instruction on one line, cut to `limit` characters: a progress line, not the Dockerfile."""
    line = " ".join(instruction.split())
    return line if len(line) <= limit else line[:limit - 4].rstrip() + " ..."


class EngineProgress:
    """What the engine reports while it builds and pulls. This base shows nothing (the engine's
    silent default); BuildProgress shows it, and a reporter of another kind (the pytest plugin's
    controller, say) implements the same methods."""

    def build_started(self, name: str, tag: str) -> None:
        """The variant `name` starts building as `tag`."""

    def build_step(self, name: str, number: int, total: int, instruction: str) -> None:
        """Step `number` of `total` starts (docker's "Step 3/9 : RUN ..."); the text is redacted."""

    def build_finished(self, name: str, tag: str, size_bytes: int) -> None:
        """The build succeeded; the image is `size_bytes` large."""

    def build_failed(self, name: str) -> None:
        """The build ended without an image (the engine raises its own one-line error)."""

    def pull_started(self, ref: str) -> None:
        """`ref` starts being pulled."""

    def pull_event(self, ref: str, event: dict) -> None:
        """One event of the engine's pull stream (a layer's status, its bytes so far)."""

    def pull_finished(self, ref: str, size_bytes: int) -> None:
        """`ref` is present locally, `size_bytes` large."""

    def pull_failed(self, ref: str) -> None:
        """The pull ended without the image (the engine raises its own one-line error)."""


@dataclass
class _Job:
    """A build or pull under way, as its progress line shows it."""
    label: str  # what its lines start with: the variant's name, "pulling REF"
    started: float
    said_at: float  # when its last log line was written: a heartbeat is due HEARTBEAT_S later
    task: TaskID | None = None  # its line on the terminal

    def heartbeat(self, now: float) -> str:
        raise NotImplementedError


@dataclass
class _Build(_Job):
    step: str = ""  # "step 3/9", once the first step started
    step_started: float = 0.0

    def heartbeat(self, now: float) -> str:
        if not self.step:
            return f"{self.label}: still starting ({duration(now - self.started)})"
        return f"{self.label}: {self.step} still running ({duration(now - self.step_started)})"


@dataclass
class _Layer:
    current: int = 0
    total: int = 0
    done: bool = False


@dataclass
class _Pull(_Job):
    layers: dict[str, _Layer] = field(default_factory=dict)

    def record(self, event: dict) -> bool:
        """Take one event of the pull stream in; whether it completed a layer."""
        status, layer_id = event.get("status", ""), event.get("id")
        if not layer_id or status.startswith("Pulling from"):  # "Pulling from" is about the tag, not a layer
            return False
        layer = self.layers.setdefault(layer_id, _Layer())
        detail = event.get("progressDetail") or {}
        if detail.get("total"):  # downloading, or extracting (a download too quick to report)
            layer.total = max(layer.total, detail["total"])
        if status == "Downloading":
            layer.current = detail.get("current", layer.current)
        elif status in ("Download complete", "Pull complete"):
            layer.current = layer.total
        if status in ("Pull complete", "Already exists") and not layer.done:
            layer.done = True
            return True
        return False

    def summary(self) -> str:
        if not self.layers:
            return "asking the registry"
        done = sum(layer.done for layer in self.layers.values())
        current = sum(layer.current for layer in self.layers.values())
        total = sum(layer.total for layer in self.layers.values())
        return f"{done}/{len(self.layers)} layers, {current / 1e6:.0f} MB of {total / 1e6:.0f} MB"

    def heartbeat(self, now: float) -> str:
        return f"{self.label}: {self.summary()} ({duration(now - self.started)})"


def _live_lines(console: Console) -> Progress:
    """A line per job, redrawn in place: a spinner, what it does now (text, never read as markup),
    its time so far; cleared when done, its outcome printed above as a plain line."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.table import Column
    what = TextColumn("{task.description}", markup=False, table_column=Column(no_wrap=True, overflow="ellipsis"))
    return Progress(SpinnerColumn(), what, TimeElapsedColumn(), console=console, transient=True)


class BuildProgress(EngineProgress):
    """Builds and pulls shown on `stream` (default: stdout) as they happen; use it as a context
    manager (it starts the terminal's live lines, or the log's heartbeats). Thread-safe: builds
    in several threads each get their own line. After two builds or more it ends with their total.
    Once it has ended, it shows nothing more (a build thread still winding down after Ctrl-C)."""

    def __init__(self, stream: TextIO | None = None):
        from rich.console import Console
        self._console = Console(file=stream or sys.stdout)
        self._live = _live_lines(self._console) if self._console.is_interactive else None
        self._jobs: dict[tuple[str, str], _Job] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._heartbeats: threading.Thread | None = None
        self._builds_done = 0
        self._first_started: float | None = None  # of the first build
        self._last_finished = 0.0  # of the last build
        self._ended_all = False  # the context has ended: later reports are not shown

    def __enter__(self) -> BuildProgress:
        self._ended_all = False
        if self._live:
            self._live.start()
        else:
            self._stopping.clear()
            self._heartbeats = threading.Thread(target=self._beat, name="rendergate-heartbeats", daemon=True)
            self._heartbeats.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._heartbeats:
            self._stopping.set()
            self._heartbeats.join()
        with self._lock:
            if self._live:
                self._live.stop()
            if self._builds_done > 1 and self._first_started is not None:
                self._say(f"{self._builds_done} images built in {duration(self._last_finished - self._first_started)}")
            self._ended_all = True

    def build_started(self, name: str, tag: str) -> None:
        now = time.monotonic()
        with self._lock:
            if self._first_started is None:
                self._first_started = now
            self._begin(("build", name), _Build(name, now, now), f"{name}: building {tag}")

    def build_step(self, name: str, number: int, total: int, instruction: str) -> None:
        now = time.monotonic()
        with self._lock:
            job = self._jobs.get(("build", name))
            if not isinstance(job, _Build):
                return
            job.step, job.step_started = f"step {number}/{total}", now
            if self._live and job.task is not None:
                self._live.update(job.task, description=redact(f"{name}: {job.step} {shortened(instruction)}"))
            else:
                self._say(f"{name}: {job.step} ({duration(now - job.started)}) {shortened(instruction)}")
                job.said_at = now

    def build_finished(self, name: str, tag: str, size_bytes: int) -> None:
        with self._lock:
            _, took = self._ended(("build", name))
            self._builds_done += 1
            self._last_finished = time.monotonic()
            self._say(f"built {tag} in {took} ({size_bytes / 1e9:.2f} GB)")

    def build_failed(self, name: str) -> None:
        with self._lock:
            job, took = self._ended(("build", name))
            if isinstance(job, _Build):
                self._say(f"{name}: build failed at {job.step or 'the start'} after {took}")

    def pull_started(self, ref: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._begin(("pull", ref), _Pull(f"pulling {ref}", now, now), f"pulling {ref}")

    def pull_event(self, ref: str, event: dict) -> None:
        now = time.monotonic()
        with self._lock:
            job = self._jobs.get(("pull", ref))
            if not isinstance(job, _Pull):
                return
            completed_a_layer = job.record(event)
            if self._live and job.task is not None:
                self._live.update(job.task, description=redact(f"{job.label}: {job.summary()}"))
            elif completed_a_layer:
                self._say(job.heartbeat(now))
                job.said_at = now

    def pull_finished(self, ref: str, size_bytes: int) -> None:
        with self._lock:
            self._say(f"pulled {ref} in {self._ended(('pull', ref))[1]} ({size_bytes / 1e9:.2f} GB)")

    def pull_failed(self, ref: str) -> None:
        with self._lock:
            job, took = self._ended(("pull", ref))
            if job:
                self._say(f"pulling {ref} failed after {took}")

    def _begin(self, key: tuple[str, str], job: _Job, first_line: str) -> None:
        if self._live and not self._ended_all:
            job.task = self._live.add_task(redact(first_line), total=None)
        else:
            self._say(first_line)
        self._jobs[key] = job

    def _ended(self, key: tuple[str, str]) -> tuple[_Job | None, str]:
        """The job of `key`, ended now (its live line removed), and how long it took ("?": never begun)."""
        job = self._jobs.pop(key, None)
        if self._live and job and job.task is not None and not self._ended_all:
            self._live.remove_task(job.task)
            self._live.refresh()  # its line is gone before anything is printed above the live lines
        return job, duration(time.monotonic() - job.started) if job else "?"

    def _say(self, line: str) -> None:
        """One line, above the live lines on a terminal; Text, so that nothing in it is read as markup.
        Called with the lock held: a line is written whole before another starts."""
        from rich.text import Text
        if not self._ended_all:
            self._console.print(Text(redact(line)), soft_wrap=True)

    def _beat(self) -> None:
        """In a log: a line for each job that has been quiet for HEARTBEAT_S."""
        while not self._stopping.wait(1):
            now = time.monotonic()
            with self._lock:
                for job in self._jobs.values():
                    if now - job.said_at >= HEARTBEAT_S:
                        self._say(job.heartbeat(now))
                        job.said_at = now
