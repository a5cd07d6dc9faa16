"""Fixtures for rendergate's own tests: real images built from images/, known-bad images built
FROM them with one planted defect, and the suites run as a user runs them (a pytest process)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
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


@pytest.fixture(scope="session")
def engine() -> Engine:
    return Engine()


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
    complete: bool
    run_id: str
    results: list[dict]
    leftover: list[str]  # containers of this run still present after it ended
    containers_started: int

    def outcome(self, check: str, variant: str, requirement: str | None = None) -> dict:
        matches = [r for r in self.results if r["check"] == check and r["variant"] == variant
                   and (requirement is None or r["requirement"] == requirement)]
        assert len(matches) == 1, f"{check}[{variant}, {requirement}]: {len(matches)} results\n{self.output}"
        return matches[0]


def run_suite(tmp_path: Path, *args: str, timeout: float = 600) -> SuiteRun:
    """Run the validation suites in their own pytest process, as a user would."""
    results = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, "-m", "pytest", "suites", "-p", "no:randomly", "-q",
                           f"--results-json={results}", f"--base-image={BASE_IMAGE}", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    output = proc.stdout + proc.stderr
    data = json.loads(results.read_text()) if results.exists() else {"complete": False, "run_id": "", "results": []}
    run_id = data.get("run_id", "")
    leftover = [c["name"] for c in Engine().containers(run_id)] if run_id else []
    return SuiteRun(proc.returncode, output, data["complete"], run_id, data["results"], leftover,
                    data.get("containers_started", 0))


@pytest.fixture
def container_target(engine, good_images, tmp_path):
    """A running container of a good variant image, as the suites' docker target; removed after."""
    opened = []

    def open_target(name: str) -> DockerTarget:
        opened.append(DockerTarget.start(engine, load_variant(ROOT / "images" / name), good_images[name],
                                         f"tests-{os.getpid()}", tmp_path, default_timeout=300))
        return opened[-1]

    yield open_target
    for target in opened:
        target.close()


@pytest.fixture
def suite(tmp_path):
    return lambda *args, **kw: run_suite(tmp_path, *args, **kw)
