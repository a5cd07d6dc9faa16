"""What the host running the suite has: NVIDIA GPUs or not, decided once per process."""
from __future__ import annotations

import functools
import shutil
import subprocess

from .parsers import parse_nvidia_smi_csv


@functools.lru_cache(maxsize=1)
def host_gpu_names() -> tuple[str, ...]:
    """Names of this host's NVIDIA GPUs; empty when there is no driver or no GPU."""
    if not shutil.which("nvidia-smi"):
        return ()
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    if out.returncode != 0:
        return ()
    return tuple(row["name"] for row in parse_nvidia_smi_csv(out.stdout, ["name"]))
