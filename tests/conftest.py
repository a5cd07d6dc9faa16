"""Fixtures for rendergate's own tests: real images built from images/, known-bad images built
FROM them with one planted defect, and the suites run as a user runs them (a pytest process)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from rendergate.engine import Engine
from rendergate.manifest import load_variant, load_variants
from rendergate.targets import DockerTarget

ROOT = Path(__file__).resolve().parents[1]
KNOWN_BAD = ROOT / "tests" / "known_bad"
BASE_IMAGE = os.environ.get("BASE_IMAGE", "rendergate/debian:bookworm")


def pytest_configure(config):
    config.addinivalue_line("markers", "serial: measures timing; runs in the serial phase of `make test`, alone")


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
def good_images(engine, tmp_path_factory) -> dict[str, str]:
    """Every variant's image, built from images/ (a docker cache hit once `make build` ran)."""
    if BASE_IMAGE.startswith("rendergate/"):
        subprocess.run([ROOT / "scripts" / "make-base-image", BASE_IMAGE], check=True, capture_output=True)
    extra_ca = os.environ.get("RENDERGATE_EXTRA_CA")
    logs = tmp_path_factory.mktemp("build-logs")
    return {name: engine.build(v, logs, BASE_IMAGE, Path(extra_ca) if extra_ca else None)
            for name, v in load_variants(ROOT / "images").items() if v.needs_image}


@pytest.fixture(scope="session")
def known_bad_image(engine, good_images):
    """Build tests/known_bad/<name> FROM the good image it plants a defect in."""
    def build(name: str) -> str:
        tag = f"rendergate-known-bad/{name}:test"
        engine.client.images.build(path=str(KNOWN_BAD / name), tag=tag, rm=True, forcerm=True,
                                   buildargs={"BUILD_BASE": BASE_IMAGE})
        return tag
    return build


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


def read_verdicts(reports: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((reports / "verdicts").glob("*.json"))}


def run_suite(tmp_path: Path, *args: str, timeout: float = 600) -> SuiteRun:
    """Run the validation suites in their own pytest process, as a user would, with their own
    reports folder."""
    reports = tmp_path / "reports"
    proc = subprocess.run([sys.executable, "-m", "pytest", "suites", "-p", "no:randomly", "-q",
                           f"--reports-dir={reports}", f"--base-image={BASE_IMAGE}", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    verdicts = read_verdicts(reports)
    run_ids = {v["run_id"] for v in verdicts.values()}
    leftover = [c["name"] for run_id in run_ids for c in Engine().containers(run_id)]
    return SuiteRun(proc.returncode, proc.stdout + proc.stderr, reports, verdicts, leftover)


@pytest.fixture
def container_target(engine, good_images, tmp_path):
    """A running container of a good variant image, as the suites' docker target; removed after."""
    opened = []

    def open_target(name: str, runtime: str | None = None) -> DockerTarget:
        opened.append(DockerTarget.start(engine, load_variant(ROOT / "images" / name), good_images[name],
                                         uuid.uuid4().hex[:8], tmp_path, default_timeout=300, runtime=runtime))
        return opened[-1]

    yield open_target
    for target in opened:
        target.close()


@pytest.fixture
def suite(tmp_path):
    return lambda *args, **kw: run_suite(tmp_path, *args, **kw)
