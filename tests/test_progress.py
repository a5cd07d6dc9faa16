"""Builds and pulls show their progress as they happen (rendergate/engines/progress.py): real builds of
tiny images through the real command, in a log (a pipe, as CI reads it) and on a terminal (a
pseudo-terminal), and a real pull from a registry on loopback."""
from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import struct
import subprocess
import sys
import termios
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
