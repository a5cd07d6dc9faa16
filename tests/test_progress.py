"""Builds and pulls show their progress as they happen (rendergate/engines/progress.py): real builds of
tiny images through the real command, in a log (a pipe, as CI reads it) and on a terminal (a
pseudo-terminal), and a real pull from a registry on loopback."""
from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
import uuid
from pathlib import Path

import docker.errors
import pytest

from conftest import CLI_TIMEOUT, ROOT, SETUP_TIMEOUT, at_most, loopback_registry
from rendergate.engines.docker_engine import EngineError
from rendergate.engines.progress import BuildProgress

LOCAL_BASE = "rendergate/debian:bookworm"
MANIFEST = 'description = "a tiny image, built to watch its progress"\n[run]\ngpus = "none"\ncommand = ["sleep", "infinity"]\n'
DURATION = r"(\d+(?:\.\d)? s|\d+ min \d+ s|\d+ h \d+ min)"  # as progress.duration says it: 4.2 s, 35 s, 3 min 31 s
SIZE = r"\(\d+\.\d\d GB\)"
# What would make rich take a pipe for a terminal (or the other way round), and the base image a run may name.
_UNSET = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR", "COLUMNS", "BASE_IMAGE")


def seconds(said: str) -> float:
    """A duration as printed ('3 min 31 s') back to seconds: the format people read is also parseable."""
    units = {"h": 3600, "min": 60, "s": 1}
    words = said.split()
    return sum(float(number) * units[unit] for number, unit in zip(words[::2], words[1::2]))


def environment(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k not in _UNSET}, **extra}


@pytest.fixture(scope="module")
def local_base():
    subprocess.run([ROOT / "scripts" / "make-base-image", LOCAL_BASE], check=True, capture_output=True, timeout=SETUP_TIMEOUT)


@pytest.fixture
def tiny_variant(local_base, engine, tmp_path):
    """A variant of its own in a tmp images dir, FROM the local base; its name, unique, is also
    its first step's label, so that no cached layer hides a step. Returns (name, images dir);
    the image is removed after."""
    made = []

    def make(*steps: str) -> tuple[str, Path]:
        name = f"progress-{uuid.uuid4().hex[:8]}"
        folder = tmp_path / "images" / name
        folder.mkdir(parents=True)
        (folder / "manifest.toml").write_text(MANIFEST)
        (folder / "Dockerfile").write_text("\n".join([f"FROM {LOCAL_BASE}", f"LABEL rendergate.test={name}", *steps]) + "\n")
        made.append(name)
        return name, folder.parent

    yield make
    for name in made:
        try:
            engine.client.images.remove(f"rendergate/{name}:dev", force=True)
        except docker.errors.ImageNotFound:  # its build failed
            pass


def build_command(images: Path, name: str) -> list[str]:
    return [sys.executable, "-m", "rendergate", f"--images-dir={images}", f"--reports-dir={images.parent / 'reports'}",
            "build", name]


def on_a_terminal(command: list[str], timeout: int = CLI_TIMEOUT) -> tuple[int, str]:
    """Run `command` with a pseudo-terminal (120 columns) as its stdin, stdout and stderr, as a
    person at a terminal runs it; its exit status and all it wrote."""
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(command, cwd=ROOT, stdin=secondary, stdout=secondary, stderr=secondary,
                            env=environment(TERM="xterm-256color"))
    os.close(secondary)
    output = b""
    try:
        with at_most(timeout):
            while True:
                try:
                    chunk = os.read(primary, 65536)
                except OSError:  # EIO: the command ended and closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
            proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(primary)
    return proc.returncode, output.decode(errors="replace")


def test_a_build_in_a_log_shows_each_step_as_it_starts_and_a_heartbeat_while_one_runs_long(tiny_variant):
    name, images = tiny_variant("RUN sleep 35", "RUN echo done")
    # A build of 35 s by design (37 s measured beside the suite), and the limit of a command.
    done = subprocess.run(build_command(images, name), cwd=ROOT, capture_output=True, text=True, timeout=35 + CLI_TIMEOUT,
                          env=environment())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "\r" not in done.stdout and "\x1b" not in done.stdout, repr(done.stdout)  # a log gets plain lines
    expected = [rf"{name}: building rendergate/{name}:dev",
                rf"{name}: step 1/4 \({DURATION}\) FROM {LOCAL_BASE}",
                rf"{name}: step 2/4 \({DURATION}\) LABEL rendergate.test={name}",
                rf"{name}: step 3/4 \({DURATION}\) RUN sleep 35",
                rf"{name}: step 3/4 still running \({DURATION}\)",  # 30 s into the step: the log is not silent
                rf"{name}: step 4/4 \({DURATION}\) RUN echo done",
                rf"built rendergate/{name}:dev in {DURATION} {SIZE}"]
    lines = done.stdout.splitlines()
    matches = [re.fullmatch(pattern, line) for pattern, line in zip(expected, lines)]
    assert len(lines) == len(expected) and all(matches), done.stdout
    heartbeat = seconds(matches[4][1])
    assert 30 <= heartbeat < 33, done.stdout
    elapsed = [seconds(m[1]) for m in matches[1:4]] + [seconds(matches[5][1]), seconds(matches[6][1])]
    assert elapsed == sorted(elapsed) and elapsed[3] >= 35, done.stdout  # the time of the build so far, at each step


def test_a_build_on_a_terminal_redraws_its_line_in_place(tiny_variant):
    name, images = tiny_variant("RUN sleep 3", "RUN true")
    returncode, output = on_a_terminal(build_command(images, name))
    assert returncode == 0, output
    step = f"{name}: step 3/4 RUN sleep 3"
    assert output.count(step) > 5, output  # redrawn while the step runs (spinner, elapsed time)...
    assert output.count("\r\x1b[2K") > 5, repr(output)  # ...in place: back to the line's start, erased
    plain = [part for part in re.split(r"[\r\n]+", re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output)) if part.strip()]
    assert re.fullmatch(rf"built rendergate/{name}:dev in {DURATION} {SIZE}", plain[-1]), plain[-3:]
    assert not any("still running" in part for part in plain)  # heartbeats are for logs


def test_a_failing_build_still_ends_with_its_one_line_error(tiny_variant):
    name, images = tiny_variant("RUN echo about to fail && exit 3", "RUN echo never")
    done = subprocess.run(build_command(images, name), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=CLI_TIMEOUT, env=environment())
    assert done.returncode == 2, done.stdout
    lines = done.stdout.splitlines()
    steps = [re.fullmatch(rf"{name}: step (\d/4) \({DURATION}\) .*", line) for line in lines]
    assert [m[1] for m in steps if m] == ["1/4", "2/4", "3/4"], done.stdout
    assert re.fullmatch(rf"{name}: build failed at step 3/4 after {DURATION}", lines[-2]), done.stdout
    assert lines[-1].startswith(f"rendergate: building rendergate/{name}:dev failed at step 3/4 : about to fail "
                                "(full log: "), done.stdout


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    with loopback_registry(tmp_path_factory.mktemp("progress-registry")) as address:
        yield address


def test_a_pull_shows_its_layers_as_they_come(registry, engine, tmp_path):
    """Two layers of random bytes (3 and 5 MB), pushed, removed here, pulled back."""
    ref = f"{registry}/rendergate-test/layers:{uuid.uuid4().hex[:8]}"
    (tmp_path / "a").write_bytes(os.urandom(3_000_000))
    (tmp_path / "b").write_bytes(os.urandom(5_000_000))
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY a /a\nCOPY b /b\n")
    engine.client.images.build(path=str(tmp_path), tag=ref, rm=True)
    pushed = engine.client.images.push(ref)
    assert '"error"' not in pushed, pushed
    engine.client.images.remove(ref, force=True)
    log = io.StringIO()
    try:
        with BuildProgress(stream=log) as progress:
            engine.pull(ref, progress=progress)
            with pytest.raises(EngineError, match=r"cannot pull .*:absent: manifest for .* not found"):
                engine.pull(f"{registry}/rendergate-test/layers:absent", progress=progress)
    finally:
        engine.client.images.remove(ref, force=True)
    at = re.escape(ref)
    expected = [rf"pulling {at}",
                rf"pulling {at}: 1/2 layers, \d+ MB of \d+ MB \({DURATION}\)",
                rf"pulling {at}: 2/2 layers, 8 MB of 8 MB \({DURATION}\)",
                rf"pulled {at} in {DURATION} \(0\.01 GB\)",
                rf"pulling {re.escape(registry)}/rendergate-test/layers:absent",
                rf"pulling {re.escape(registry)}/rendergate-test/layers:absent failed after {DURATION}"]
    lines = log.getvalue().splitlines()
    assert len(lines) == len(expected) and all(re.fullmatch(p, line) for p, line in zip(expected, lines)), log.getvalue()


def test_builds_run_at_once_each_log_line_names_its_variant_and_a_failure_stops_none(tiny_variant):
    """Three variants through one command, built at once (RENDERGATE_BUILD_JOBS, default 3): in a
    log every line is whole and names its variant, one build failing stops neither other, each
    build keeps its own log, and the failure ends the command with its one line."""
    slow, _ = tiny_variant("RUN sleep 6", "RUN echo slow")
    failing, _ = tiny_variant("RUN echo about to fail && exit 3", "RUN echo never")
    other, images = tiny_variant("RUN sleep 6", "RUN echo other")
    command = [*build_command(images, slow)[:-1], slow, failing, other]
    done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=CLI_TIMEOUT, env=environment())
    assert done.returncode == 2, done.stdout
    names = "|".join((slow, failing, other))
    whole = [rf"({names}): building rendergate/({names}):dev",
             rf"({names}): step \d/4 \({DURATION}\) .*",
             rf"{failing}: build failed at step 3/4 after {DURATION}",
             rf"built rendergate/({slow}|{other}):dev in {DURATION} {SIZE}",
             rf"2 images built in {DURATION}",
             rf"rendergate: building rendergate/{failing}:dev failed at step 3/4 : about to fail \(full log: .*\)"]
    lines = done.stdout.splitlines()
    assert all(any(re.fullmatch(p, line) for p in whole) for line in lines), done.stdout  # no line shares another's
    assert lines[-1].startswith(f"rendergate: building rendergate/{failing}:dev failed"), done.stdout
    took = seconds(re.fullmatch(rf"2 images built in {DURATION}", lines[-2])[1])
    assert took < 11, done.stdout  # two builds of 6 s and more each, at once
    for name in (slow, other):
        assert re.search(rf"^{name}: step 4/4 .*RUN echo", done.stdout, re.M), done.stdout
    logs = images.parent / "reports" / "logs"
    assert sorted(p.name for p in logs.iterdir()) == sorted(f"{n}-build.log" for n in (slow, failing, other))
    assert "about to fail" in (logs / f"{failing}-build.log").read_text()
    assert "slow" in (logs / f"{slow}-build.log").read_text() and "other" not in (logs / f"{slow}-build.log").read_text()


def test_reports_from_many_threads_at_once_never_share_a_line():
    """Build threads report at once (as in_parallel runs them): each line is written whole."""
    log = io.StringIO()
    with BuildProgress(stream=log) as progress:
        def build(n: int) -> None:
            name = f"variant-{n}"
            progress.build_started(name, f"rendergate/{name}:dev")
            for step in range(1, 51):
                progress.build_step(name, step, 50, f"RUN echo {'x' * 60} {n}")
            progress.build_finished(name, f"rendergate/{name}:dev", 10**8)
        threads = [threading.Thread(target=build, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    lines = log.getvalue().splitlines()
    whole = [r"(variant-\d): building rendergate/\1:dev",
             rf"(variant-(\d)): step \d+/50 \({DURATION}\) RUN echo x{{60}} \2",
             rf"built rendergate/variant-\d:dev in {DURATION} \(0\.10 GB\)",
             rf"8 images built in {DURATION}"]
    assert len(lines) == 8 * 52 + 1
    assert all(any(re.fullmatch(p, line) for p in whole) for line in lines), log.getvalue()


def test_a_progress_that_ended_shows_nothing_more():
    """A build thread still winding down after Ctrl-C says nothing once the command's progress ended."""
    log = io.StringIO()
    with BuildProgress(stream=log) as progress:
        progress.build_started("late", "rendergate/late:dev")
    progress.build_step("late", 2, 3, "RUN true")
    progress.build_failed("late")
    assert log.getvalue() == "late: building rendergate/late:dev\n"


@pytest.mark.parametrize("said, count, jobs", [("", 5, 3), ("", 2, 2), ("1", 4, 1), ("8", 3, 3), ("2", 0, 1)])
def test_how_many_builds_at_once(monkeypatch, said, count, jobs):
    from rendergate.engines.docker_engine import build_jobs
    monkeypatch.setenv("RENDERGATE_BUILD_JOBS", said)
    assert build_jobs(count) == jobs


def test_a_bad_number_of_builds_at_once_is_one_line(monkeypatch):
    from rendergate.engines.docker_engine import build_jobs
    monkeypatch.setenv("RENDERGATE_BUILD_JOBS", "many")
    with pytest.raises(EngineError, match=r"RENDERGATE_BUILD_JOBS='many': the number of images built at once"):
        build_jobs(3)


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_builds_interrupted_at_once_leave_no_container_and_no_image(tiny_variant, engine, signal_number):
    """Ctrl-C (SIGINT) or CI's SIGTERM during two builds at once: the command ends at once, the
    engine stops both builds, and neither leaves a container nor a tagged image."""
    marker = uuid.uuid4().hex[:8]
    first, _ = tiny_variant(f"RUN sleep 40 # {marker}", "RUN true")
    second, images = tiny_variant(f"RUN sleep 41 # {marker}", "RUN true")
    # SIGINT as a terminal's Ctrl-C sends it: not ignored, as a job started with & in a script inherits it.
    proc = subprocess.Popen([*build_command(images, first), second], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=environment(),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def building() -> list[str]:
        # Listed without inspecting each one: other runs' containers come and go meanwhile.
        return [c["Id"] for c in engine.client.api.containers(all=True) if marker in c.get("Command", "")]
    with at_most(CLI_TIMEOUT):
        while len(building()) < 2:  # both RUN steps under way
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.2)
    proc.send_signal(signal_number)
    try:
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    with at_most(30):
        while building():
            time.sleep(0.5)
    for name in (first, second):
        with pytest.raises(docker.errors.ImageNotFound):
            engine.client.images.get(f"rendergate/{name}:dev")
