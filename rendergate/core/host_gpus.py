"""What the host running the suite has: NVIDIA GPUs or not, and each GPU as a GpuInfo, learned
once per process by running probes/nvml.py here."""
from __future__ import annotations

import functools
import json
import subprocess
import sys

from rendergate.core.assets import PROBES
from rendergate.core.gpuinfo import GpuInfo, gpus_from_probe

NVML_PROBE = PROBES / "nvml.py"


@functools.lru_cache(maxsize=1)
def host_nvml() -> tuple[dict | None, str]:
    """NVML's view of this host (the JSON of probes/nvml.py), or None and why NVML did not start."""
    try:
        done = subprocess.run([sys.executable, str(NVML_PROBE)], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return None, "NVML did not answer within 60 s"
    if done.returncode != 0:
        return None, (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
    return json.loads(done.stdout), ""


def host_gpus() -> list[GpuInfo]:
    data, _ = host_nvml()
    return gpus_from_probe(data) if data else []


def host_gpu_names() -> tuple[str, ...]:
    """Names of this host's NVIDIA GPUs; empty when there is no driver or no GPU."""
    return tuple(gpu.name for gpu in host_gpus())
