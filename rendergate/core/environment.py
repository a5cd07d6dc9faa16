"""Where a run happened, for the report's environment table and each verdict: the host, its GPUs,
driver and CUDA versions, the container toolkit and engine, and the suite's own version.

A value that cannot be learned says so ("none", "not installed"); it is never left out, so a
reviewer can tell "no GPU" from "did not look".
"""
from __future__ import annotations

import functools
import os
import platform
import re
import shutil
import socket
import subprocess
import tomllib
from collections import Counter
from dataclasses import replace
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from rendergate.core.gpuinfo import GpuInfo, gpus_from_probe, lookup, nominal
from rendergate.core.host_gpus import host_nvml

ROOT = Path(__file__).resolve().parents[1]
NO_GPU = "no GPU"


def _output(*argv: str, cwd: Path | None = None, env: dict | None = None) -> str | None:
    """First line of a command's output, or None when it is absent or fails (it is asked nothing:
    no prompt waits on a terminal)."""
    if not shutil.which(argv[0]):
        return None
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=cwd, stdin=subprocess.DEVNULL,
                              env=env)
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
    # Only a checkout has a commit of rendergate's own: an installed package's folder may sit inside
    # the user's repo (a venv in it), whose commit is not rendergate's.
    commit = _output("git", "describe", "--always", "--dirty", "--abbrev=12", cwd=ROOT) if (ROOT / ".git").exists() else None
    return f"{base}+g{commit}" if commit else base


def gpu_type(names: list[str]) -> str:
    """The label a host is known by in merged reports: its GPU model, or "no GPU"."""
    if not names:
        return NO_GPU
    return " + ".join(f"{n}x {name}" if n > 1 else name for name, n in Counter(names).items())


def _describe(gpu: GpuInfo) -> str:
    """One GPU's identity, for hosts with several."""
    mig = "MIG on" if gpu.mig_mode and gpu.mig_mode["current"] else "MIG off"
    persistence = {1: "persistence on", 0: "persistence off"}.get(gpu.persistence_mode, "persistence n/a")
    return (f"{gpu.index}: {gpu.name} [{gpu.pci_device_id} at {gpu.pci_bus_id}, {gpu.architecture}, "
            f"cc {gpu.compute_capability}, {gpu.memory_total / 2**30:.0f} GiB, {mig}, {persistence}, {gpu.uuid}]")


_DESCRIBED = re.compile(r"[0-9]+: (?P<name>.+?) \[(?P<device>[0-9A-Fa-fx]*) at [^,]*, [^,]*, cc (?P<cc>[0-9]+\.[0-9]+|None),")


def described_gpus(host: dict) -> list[GpuInfo]:
    """The GPUs a host description (a verdict's `host`) names, as the capability table knows them:
    from `gpus` as _describe() writes it (name, PCI device id, compute capability), else from the
    GPU type alone (a Modal cell's "H100", "2x NVIDIA L4"); none for "no GPU"."""
    found = [m for part in str(host.get("gpus", "")).split("; ") if (m := _DESCRIBED.match(part))]
    if found:
        return [replace(nominal(m["name"]), pci_device_id=m["device"], known=lookup(m["name"], m["device"]),
                        compute_capability=None if m["cc"] == "None" else m["cc"]) for m in found]
    gpu_type = str(host.get("gpu_type", NO_GPU))
    if gpu_type == NO_GPU:
        return []
    return [nominal(re.sub(r"^[0-9]+x ", "", name)) for name in gpu_type.split(" + ")]


def describe_gpus(nvml: dict | None, unread: str) -> dict:
    """The GPU rows of a host description, from NVML's view (probes/nvml.py's JSON, or its shape
    as another host's /proc tells it; None: no GPU known, `unread` says why)."""
    gpus = gpus_from_probe(nvml) if nvml else []
    return {
        "gpu_type": gpu_type([g.name for g in gpus]),
        "gpus": "; ".join(_describe(g) for g in gpus) if gpus else f"none ({unread or 'NVML lists no GPU'})",
        "gpu_models": ", ".join(sorted({g.known.model if g.known else f"{g.name}: unknown to the capability table, "
                                        "judged by runtime probing" for g in gpus})) or "none",
        "driver": gpus[0].driver_version if gpus else "none",
        "cuda": gpus[0].cuda_driver_version if gpus else "none",
    }


@functools.lru_cache(maxsize=1)
def local_toolkit() -> str:
    """The NVIDIA container toolkit of this machine, by its version line (asked once: the run's
    host and a local engine's host both name it)."""
    return _output("nvidia-ctk", "--version") or _output("nvidia-container-cli", "--version") or "not installed"


def describe_host() -> dict:
    """The host running the suite: keys are the report's environment table rows."""
    nvml, nvml_error = host_nvml()
    # This machine's own engine (a cell's verdict names its engine's: engine_host); never an ssh login
    # of the docker CLI's (DOCKER_HOST=ssh://...), which could ask for a password or a host key.
    here = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")}
    engine = _output("docker", "version", "--format", "{{.Server.Version}}", env={**here, "DOCKER_CONTEXT": "default"})
    return {
        "host": socket.gethostname(),
        "os": f"{platform.system()} {platform.release()} ({platform.machine()})",
        **describe_gpus(nvml, nvml_error),
        "container_toolkit": local_toolkit(),
        "docker_engine": engine or "not running",
        "suite_version": suite_version(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
