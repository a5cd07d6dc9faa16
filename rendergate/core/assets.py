"""The files rendergate ships inside its package, found through importlib.resources: the same
paths in a checkout (the repo's suites/ and fixtures/ are mapped into the package) and in an
installed wheel. Each is a real folder or file: targets copy them in, pytest collects them."""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def _folder(package: str) -> Path:
    return Path(str(files(package)))


SUITES = _folder("rendergate.suites")  # the validation suites pytest collects
PROBES = _folder("rendergate.probes")  # scripts run inside targets with the image's Python
WORKLOADS = _folder("rendergate.fixtures") / "workloads"  # the Manim scene and the Cycles scene script
REFERENCES = _folder("rendergate.fixtures") / "references"  # reference images (make references)
CAPABILITY_TABLE = _folder("rendergate.data") / "gpus.toml"  # what each GPU model can do
VERDICT_SCHEMA = _folder("rendergate.data") / "verdict.schema.json"  # what a verdict file must be
