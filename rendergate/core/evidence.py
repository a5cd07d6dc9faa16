"""Deciding from what NVML saw (probes/gpuwatch.py) whether a workload really ran on a GPU.

Fail closed: no evidence, or evidence of nothing, is a failure. On the H100 a CUDA workload
showed 1 new compute process and a 909 MiB rise; a CPU-only one showed 0 and 0 MiB
(docs/gpu-evidence.md).
"""
from __future__ import annotations

from rendergate.core.diagnosis import Cause, Diagnosis

MIN_MEMORY_RISE_MIB = 16  # a CUDA context alone takes hundreds of MiB


def gpu_not_used(evidence: dict, workload: str) -> Diagnosis | None:
    """Why `workload` cannot be shown to have used a GPU, or None when it did."""
    if "error" in evidence:
        return Diagnosis(Cause.GPU_NOT_USED,
                         f"cannot prove {workload} used the GPU: NVML failed in the target ({evidence['error']})")
    if evidence["new_compute_processes"] == 0 and evidence["memory_rise_mib"] < MIN_MEMORY_RISE_MIB:
        return Diagnosis(Cause.GPU_NOT_USED,
                         f"{workload} ran on the CPU: NVML saw no new GPU process and "
                         f"{evidence['memory_rise_mib']} MiB more GPU memory while it ran")
    return None
