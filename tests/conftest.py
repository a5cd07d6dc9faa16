"""Fixtures for rendergate's own tests: real images built from images/, known-bad images built
FROM them with one planted defect and known-good variations of them (an entrypoint, another
user), and the suites run as a user runs them: a pytest process in this checkout, or in a
user's repo with rendergate installed from its wheel into a fresh venv."""
from __future__ import annotations

import fcntl
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from rendergate.core import times, verdict
from rendergate.core.environment import suite_version
from rendergate.core.manifest import load_variant, load_variants
from rendergate.core.outcomes import Outcome
from rendergate.engines.docker import DockerTarget
from rendergate.engines.docker_engine import Engine, owner_label
from rendergate.engines.hostload import HostLoad

ROOT = Path(__file__).resolve().parents[1]
KNOWN_BAD = ROOT / "tests" / "known_bad"
KNOWN_GOOD = ROOT / "tests" / "known_good"
# A user's repo in miniature (its README): the image the tests push, and a check of its own.
SMALL_REPO = ROOT / "tests" / "small_repo"
# What a wheel is built from: the package and the folders mapped into it (pyproject.toml).
WHEEL_SOURCES = ("pyproject.toml", "README.md", "rendergate", "suites", "fixtures")
# The installed plugin runs under pytest 8 (this checkout's venv has the newest, 9): both are supported.
INSTALLED_PYTEST = "pytest>=8.3,<9"
BASE_IMAGE = os.environ.get("BASE_IMAGE", "rendergate/debian:bookworm")
# SMALL_REPO's check is loaded by the runs that name it (--checks): not a test of this suite.
collect_ignore = ["small_repo"]

# The time limits of the subprocesses the tests start, each sized to its kind of work: the slowest
# call of that kind measured in `make test` (2026-12-05: the parallel phase under `-n 2` beside a
# CPU hog on one of the two cores, the serial phase quiet), times 5 or more. Room for a busier
# machine, and a hang still fails its test in minutes rather than CI's 90.
# A command that starts no workload (`rendergate` gate, promote, verify, merge, init; pytest
# --collect-only; make gate refusing; a build of a few small steps): slowest 7.4 s (init, which
# starts a container), a small build 5.6 s, promote pushing 2 MB 1.7 s, the rest 1-5 s.
CLI_TIMEOUT = 60
# A run of the suites without timed workloads (one variant, or all four under -n 2; in this checkout
# or a user's repo; through make gate): slowest 44.7 s (all variants), 39 s (make gate manim).
SUITE_TIMEOUT = 300
# The same on the small image of tests/small_repo: 3.4 s, pull included.
SMALL_RUN_TIMEOUT = 60
# A run with timed workloads, or of `rendergate mutate` (the serial phase, alone among the tests):
# slowest 48 s (a timed Cycles parallel render, 3 repeats), make gate of a timed variant about 45 s,
# mutate of 3 mutants 28 s (2026-12-05, quiet machine; a busy one adds to the repeats).
TIMED_SUITE_TIMEOUT = 300
# A child run from SIGINT, Ctrl-C or SIGTERM to its exit, its containers removed: 3.2 s (SIGINT),
# 5.4 s (Ctrl-C on its terminal, -n 2), 10-13.2 s (SIGTERM to the controller of -n 2: execnet
# interrupts a worker still inside a check after 5 s, or ends it 10 s later where SIGINT is ignored).
INTERRUPTED_RUN_TIMEOUT = 90
# How long a tree past its limit has to end after SIGTERM before SIGKILL: a run of the suites
# under -n 2 removes its containers and exits within 13.2 s of it (measured, below).
END_GRACE = 30
# Setting up: the local base by debootstrap (20-41 s when absent), rendergate's wheel built and
# installed into a fresh venv (about 10 s with pip's cache, more when pip downloads).
SETUP_TIMEOUT = 600

# A child that a test interrupts starts with SIGINT's default action, whatever this process was
# given: a job started with `&` from a non-interactive shell (CI's launcher, say) ignores SIGINT,
# its children inherit that, and Python then never turns SIGINT into KeyboardInterrupt; the child
# ran on as if nothing was sent. Prefix the child's command with this (it execs, keeping its pid).
WITH_SIGINT = [sys.executable, "-c", "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
               "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"]


def pytest_configure(config):
    config.addinivalue_line("markers", "serial: measures timing; runs in the serial phase of `make test`, alone")


def process_tree(pid: int) -> list[psutil.Process]:
    """A process and every process below it, as far as they still exist."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def end_tree(proc: subprocess.Popen, grace: float = 0) -> None:
    """End a child of this process that is still running, and every process below it (make's
    pytest, its xdist workers): with `grace`, SIGTERM first (a run of the suites then removes its
    containers) and SIGKILL to what is left after it. A child already reaped is left alone: its
    pid may be another process's by now (psutil checks the others were not replaced)."""
    if proc.poll() is not None:
        return
    tree = process_tree(proc.pid)
    if grace:
        for process in tree:
            with suppress(psutil.NoSuchProcess):
                process.terminate()
        _, tree = psutil.wait_procs(tree, timeout=grace)
    for process in tree:
        with suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(tree, timeout=10)


def make(*args: str, timeout: float = SUITE_TIMEOUT, env: dict | None = None) -> subprocess.CompletedProcess:
    """A target of this checkout's Makefile (`env`: variables added to this process's)."""
    return bounded(["make", "--no-print-directory", *args], timeout, cwd=ROOT,
                   env={**os.environ, "MAKEFLAGS": "", **(env or {})})


def bounded(args, timeout: float, **popen) -> subprocess.CompletedProcess:
    """subprocess.run(args, capture_output=True, text=True, timeout=timeout, **popen) (popen: cwd,
    env, shell), except that past its limit, or when the test run itself is interrupted, the
    whole tree is ended, not only its first process: make's pytest, its workers and their
    containers would run on, loading the machine under the tests after it."""
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          **popen) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except BaseException:
            end_tree(proc, grace=END_GRACE)
            raise
    return subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)


@contextmanager
def at_most(seconds: int):
    """Fail, instead of hanging the test run, when the body takes longer (SIGALRM: main thread only)."""
    def expired(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")
    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def require_tool(name: str, package: str) -> str:
    """A tool a test drives for real: outside CI a missing one skips the test, in CI it fails
    (`make test` installs it: scripts/ensure-test-tools)."""
    path = shutil.which(name)
    if not path:
        if os.environ.get("CI"):
            pytest.fail(f"{name} missing: `make test` installs {package} (scripts/ensure-test-tools)")
        pytest.skip(f"{name} missing: apt-get install {package}")
    return path


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, headless, driven through its chromedriver."""
    chromium, driver = require_tool("chromium", "chromium"), require_tool("chromedriver", "chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,2000"):
        options.add_argument(arg)
    session = webdriver.Chrome(service=Service(driver), options=options)
    yield session
    session.quit()



@contextmanager
def loopback_registry(folder: Path, more_config: str = ""):
    """Debian's docker-registry keeping its data in `folder`, on a free loopback port (the engine
    trusts 127.0.0.0/8 without TLS); `more_config` is YAML added at the top (`auth:`, say).
    Yields its address once it answers."""
    binary = require_tool("docker-registry", "docker-registry")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    config = folder / "config.yml"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {folder / 'data'}\n"
                      f"  delete:\n    enabled: true\nhttp:\n  addr: {address}\n{more_config}")
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30  # it answers within a second
    while True:
        try:
            urllib.request.urlopen(f"http://{address}/v2/", timeout=2)
            break
        except urllib.error.HTTPError as e:
            assert e.code == 401, e  # up, and asking for a login
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "docker-registry did not come up"
            time.sleep(0.3)
    try:
        yield address
    finally:
        proc.terminate()
        proc.wait(timeout=30)  # it stops at once on SIGTERM

@pytest.fixture(scope="session")
def engine() -> Engine:
    return Engine()


@pytest.fixture(scope="session")
def gvisor(engine) -> str:
    """The engine's runsc runtime (gVisor, the sandbox Modal runs containers in): outside CI its
    absence skips the test, in CI it fails (`make test` registers it: scripts/ensure-gvisor)."""
    if not engine.has_runtime("runsc"):
        if os.environ.get("CI"):
            pytest.fail("the Docker engine has no runsc runtime: `make test` registers it (scripts/ensure-gvisor)")
        pytest.skip("the Docker engine has no runsc runtime: run scripts/ensure-gvisor")
    return "runsc"


@pytest.fixture(scope="session")
def base_image() -> str:
    """The base the images build FROM: made here by debootstrap when it is the local one."""
    if BASE_IMAGE.startswith("rendergate/"):
        subprocess.run([ROOT / "scripts" / "make-base-image", BASE_IMAGE], check=True, capture_output=True,
                       timeout=SETUP_TIMEOUT)
    return BASE_IMAGE


def built_images(engine, tmp_path_factory, names: set[str] | None = None) -> dict[str, str]:
    """The variants' images (those of `names`, else all), built from images/ (a docker cache hit
    once `make build` ran)."""
    extra_ca = os.environ.get("RENDERGATE_EXTRA_CA")
    logs = tmp_path_factory.mktemp("build-logs")
    return {name: engine.build(v, logs, BASE_IMAGE, Path(extra_ca) if extra_ca else None)
            for name, v in load_variants(ROOT / "images").items() if v.needs_image and (names is None or name in names)}


@pytest.fixture(scope="session")
def good_images(engine, base_image, tmp_path_factory) -> dict[str, str]:
    """Every variant's image."""
    return built_images(engine, tmp_path_factory)


def _derived_image(engine, folder: Path, kind: str):
    def build(name: str) -> str:
        tag = f"rendergate-{kind}/{name}:test"
        engine.client.images.build(path=str(folder / name), tag=tag, rm=True, forcerm=True)
        return tag
    return build


@pytest.fixture(scope="session")
def small_image(engine, base_image) -> str:
    """The small variant of tests/small_repo (busybox, about 2 MB, no /etc/passwd): what the tests
    push to a registry."""
    tag = "rendergate-test/small:dev"
    engine.client.images.build(path=str(SMALL_REPO / "images" / "small"), tag=tag, rm=True, forcerm=True,
                               buildargs={"BASE_IMAGE": base_image})
    return tag


@pytest.fixture(scope="session")
def known_bad_image(engine, good_images):
    """Build tests/known_bad/<name> FROM the good image it plants a defect in."""
    return _derived_image(engine, KNOWN_BAD, "known-bad")


@pytest.fixture(scope="session")
def known_good_image(engine, good_images):
    """Build tests/known_good/<name> FROM the good image it varies (an entrypoint, another user)."""
    return _derived_image(engine, KNOWN_GOOD, "known-good")


@dataclass
class SuiteRun:
    returncode: int
    output: str
    reports: Path
    verdicts: dict[str, dict]  # by variant
    leftover: list[str]  # containers of this run still present after it ended

    @property
    def complete(self) -> bool:
        return bool(self.verdicts) and all(v["complete"] for v in self.verdicts.values())

    @property
    def checks(self) -> list[dict]:
        """Every check of every verdict, each with its variant."""
        return [{**c, "variant": name} for name, v in self.verdicts.items() for c in v["checks"]]

    @property
    def containers_started(self) -> int:
        return sum(v["containers_started"] for v in self.verdicts.values())

    def outcome(self, check: str, variant: str, item: str | None = None) -> dict:
        checks = self.verdicts[variant]["checks"] if variant in self.verdicts else []
        matches = [c for c in checks if c["check"] == check and (item is None or c["item"] == item)]
        assert len(matches) == 1, f"{check}[{variant}, {item}]: {len(matches)} results\n{self.output}"
        return matches[0]


def busy_loop(seconds: float) -> subprocess.Popen:
    """A real CPU hog on one core, that ends by itself after `seconds` (kill it sooner)."""
    return subprocess.Popen([sys.executable, "-c", f"import time\nend = time.time() + {seconds}\nwhile time.time() < end: pass"])


def used_by_others(seconds: float = 2) -> float:
    """The share of the host's CPUs that others use now, with nothing of this test running."""
    with HostLoad(os.getpid()).sample() as outside:
        time.sleep(seconds)
    return outside[0]


def skip_when_host_busy(checks: list[dict], gate: str, before: float) -> None:
    """A timed check that rendergate left undecided because the rest of the host was busy (`make
    test` beside a CPU hog, a shared CI runner) proves nothing either way about the image: the test
    that needs its answer is then not validated on this run, and says so. Held first to rendergate's
    own figures, and to what this test measures of the host itself, just before the run (`before`,
    used_by_others()) and just after: a host quiet at both ends makes "host busy" a fault of
    rendergate's (a wrongly wired meter would otherwise skip these tests everywhere)."""
    busy = [c for c in checks if c["outcome"] == "host-busy"]
    if busy:
        figures = busy[0]["figures"][gate]
        outside = figures["baseline"]["outside_load"] + figures["candidate"]["outside_load"]
        assert max(outside) >= figures["max_outside_load"], figures
        after = used_by_others()
        assert max(before, after) > figures["max_outside_load"], (
            f"rendergate said host busy ({max(outside):.0%}) where others used {before:.0%} of the host just before "
            f"the run and {after:.0%} just after")
        pytest.skip(f"host busy: others used up to {max(outside):.0%} of the host's CPUs during {busy[0]['check']} "
                    f"(at most {figures['max_outside_load']:.0%} decides a timing): run it on a quieter machine")


@functools.lru_cache(maxsize=1)
def local_engine() -> dict:
    """The local Docker engine as its runs' verdicts name it (the gate binds to it): its id, its host."""
    engine_id, host = Engine().identity()
    return {"engine_id": engine_id, "host": host}


def written_verdict(variant, host: dict, image: dict | None = None, outcomes: dict[str, str] | None = None,
                    target: str = "docker") -> dict:
    """A complete verdict written through the code a run writes them with, one check per declared
    requirement, each passed unless `outcomes` says otherwise: a stand-in for a run where the
    run itself cannot happen here (a GPU host, Modal), or for a verdict someone tampered with. A
    docker verdict names the local engine, as a run on it does (unless `host` names another)."""
    engine = local_engine() if target == "docker" else {}
    v = verdict.Verdict.start(variant, "run-1", target, {"suite_version": suite_version(), **engine, **host}, {})
    v.image = image
    for (name, check, item), runs in v.expected.items():
        outcome = Outcome((outcomes or {}).get(name, "passed"))
        for run in range(runs):
            v.checks.append(verdict.CheckResult(f"suites/x.py::{check}[{variant.name}-{item}-{run}]", check, name, item,
                                                outcome=outcome,
                                                message="" if outcome == "passed" else f"{name} broke [command-failed]"))
    v.complete, v.finished = True, times.now_iso()
    return v.as_json()


def rendergate_cli(*args: str, reports=None, env: dict | None = None, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess:
    """The `rendergate` command of this checkout (`env`: variables added to this process's)."""
    return bounded([sys.executable, "-m", "rendergate", *([f"--reports-dir={reports}"] if reports else []), *args],
                   timeout, cwd=ROOT, env={**os.environ, **(env or {})})


def read_verdicts(reports: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((reports / "verdicts").glob("*.json"))}


def _finished(proc: subprocess.CompletedProcess, reports: Path) -> SuiteRun:
    verdicts = read_verdicts(reports)
    run_ids = {v["run_id"] for v in verdicts.values()}
    leftover = [c["name"] for run_id in run_ids for c in Engine().containers(run_id)]
    return SuiteRun(proc.returncode, proc.stdout + proc.stderr, reports, verdicts, leftover)


def run_suite(tmp_path: Path, *args: str, timeout: float = SUITE_TIMEOUT, env: dict | None = None) -> SuiteRun:
    """Run the validation suites in their own pytest process, from this checkout, with their own
    reports folder (`env`: variables added to this process's)."""
    reports = tmp_path / "reports"
    proc = bounded([sys.executable, "-m", "pytest", "suites", "-p", "no:randomly", "-q", f"--reports-dir={reports}",
                    f"--base-image={BASE_IMAGE}", *args], timeout, cwd=ROOT, env={**os.environ, **(env or {})})
    return _finished(proc, reports)


def once_per_run(tmp_path_factory, name: str, make) -> Path:
    """A folder that `make(folder)` fills once per test run, whichever xdist worker asks first;
    the others wait for it and share it (a session fixture alone would run once per worker)."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the run's folder, the same for every xdist worker
    folder = shared / name
    with open(shared / f"{name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / f"{name}.done").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            make(folder)
            (shared / f"{name}.done").touch()
    return folder


def _install_wheel(folder: Path) -> None:
    source, wheels, venv = folder / "source", folder / "wheels", folder / "venv"
    source.mkdir()
    for name in WHEEL_SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", wheels, source],
                   check=True, capture_output=True, timeout=SETUP_TIMEOUT)
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=SETUP_TIMEOUT)
    subprocess.run([venv / "bin" / "pip", "install", "-q", next(wheels.glob("rendergate-*.whl")), INSTALLED_PYTEST],
                   check=True, capture_output=True, timeout=SETUP_TIMEOUT)


@pytest.fixture(scope="session")
def installed(tmp_path_factory) -> Path:
    """rendergate as a platform team installs it: a wheel built from this checkout (from a copy of
    what the wheel is made of, so that the build leaves nothing here), installed into a fresh venv
    outside the checkout, with pytest 8. Returns the venv."""
    return once_per_run(tmp_path_factory, "installed", _install_wheel) / "venv"


def user_repo(tmp_path: Path, manifests: dict[str, str]) -> Path:
    """A platform team's repo: only manifests, images/<name>/manifest.toml, for images built elsewhere."""
    repo = tmp_path / "studio-repo"
    for name, text in manifests.items():
        (repo / "images" / name).mkdir(parents=True, exist_ok=True)
        (repo / "images" / name / "manifest.toml").write_text(text)
    return repo


def run_in_user_repo(venv: Path, repo: Path, *args: str, env: dict | None = None,
                     timeout: float = SUITE_TIMEOUT) -> SuiteRun:
    """`pytest` in the user's repo, with the installed rendergate, as the team's CI runs it."""
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = bounded([venv / "bin" / "pytest", "-p", "no:randomly", "-q", *args], timeout, cwd=repo,
                   env={**environment, **(env or {})})
    return _finished(proc, repo / "reports")


@pytest.fixture
def container_target(engine, good_images, tmp_path):
    """A running container of a good variant image, as the suites' docker target; removed after."""
    opened = []

    def open_target(name: str, runtime: str | None = None) -> DockerTarget:
        opened.append(DockerTarget.start(engine, load_variant(ROOT / "images" / name), good_images[name],
                                         uuid.uuid4().hex[:8], owner_label(), tmp_path, default_timeout=300,
                                         runtime=runtime))
        return opened[-1]

    yield open_target
    for target in opened:
        engine.remove(target.container.id)


@pytest.fixture
def suite(tmp_path):
    return lambda *args, **kw: run_suite(tmp_path, *args, **kw)
