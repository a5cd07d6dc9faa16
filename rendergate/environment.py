"""Where a run happened, for the report's environment table and each verdict: the host, its GPUs,
driver and CUDA versions, the container toolkit and engine, and the suite's own version.

A value that cannot be learned says so ("none", "not installed"); it is never left out, so a
reviewer can tell "no GPU" from "did not look".
"""
from __future__ import annotations

import platform
import shutil
import socket
import subprocess
import tomllib
from collections import Counter
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from .parsers import parse_nvidia_smi_csv

ROOT = Path(__file__).resolve().parents[1]
NO_GPU = "no GPU"


def _output(*argv: str, cwd: Path | None = None) -> str | None:
    """First line of a command's output, or None when it is absent or fails."""
    if not shutil.which(argv[0]):
        return None
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=cwd)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0].strip() if done.returncode == 0 and lines else None


def suite_version() -> str:
    """The package version, and the git commit it runs from (`-dirty` with local changes)."""
    try:
        base = version("rendergate")
    except PackageNotFoundError:  # run from a checkout that was never installed
        base = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    commit = _output("git", "describe", "--always", "--dirty", "--abbrev=12", cwd=ROOT)
    return f"{base}+g{commit}" if commit else base


def gpu_type(names: list[str]) -> str:
    """The label a host is known by in merged reports: its GPU model, or "no GPU"."""
    if not names:
        return NO_GPU
    return " + ".join(f"{n}x {name}" if n > 1 else name for name, n in Counter(names).items())


def _cuda_version() -> str | None:
    """The CUDA version the driver supports, as nvidia-smi's banner states it."""
    banner = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30).stdout
    marker = "CUDA Version:"
    return banner.split(marker, 1)[1].split()[0] if marker in banner else None


def describe_host() -> dict:
    """The host running the suite: keys are the report's environment table rows."""
    gpus, driver, cuda = [], None, None
    smi = shutil.which("nvidia-smi") and subprocess.run(
        ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
        capture_output=True, text=True, timeout=30)
    if smi and smi.returncode == 0:
        rows = parse_nvidia_smi_csv(smi.stdout, ["name", "driver_version"])
        gpus = [r["name"] for r in rows]
        driver = rows[0]["driver_version"] if rows else None
        cuda = _cuda_version()
    toolkit = _output("nvidia-ctk", "--version") or _output("nvidia-container-cli", "--version")
    engine = _output("docker", "version", "--format", "{{.Server.Version}}")
    return {
        "host": socket.gethostname(),
        "os": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "gpu_type": gpu_type(gpus),
        "gpus": f"{len(gpus)}: " + ", ".join(sorted(set(gpus))) if gpus else "none",
        "driver": driver or "none",
        "cuda": cuda or "none",
        "container_toolkit": toolkit or "not installed",
        "docker_engine": engine or "not running",
        "suite_version": suite_version(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
