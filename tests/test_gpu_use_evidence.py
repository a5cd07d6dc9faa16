"""The Cycles render check fails closed: bpy asked for OptiX on a host without a GPU really
renders, on the CPU, without an error; the evidence the check decides on must say so."""
import json
from pathlib import Path

from rendergate.core.diagnosis import Cause
from rendergate.core.evidence import gpu_not_used

ROOT = Path(__file__).resolve().parents[1]
H100_GPUWATCH = ROOT / "docs" / "gpu-evidence-h100-gpuwatch.txt"


def test_silent_cpu_fallback_is_caught(container_target):
    blender_target = container_target("blender")
    out = f"{blender_target.workdir}/cycles-OPTIX.png"
    result = blender_target.probe("cycles_devices", "render", "OPTIX", out)
    assert blender_target.fetch(out).startswith(b"\x89PNG")  # bpy rendered anyway: on the CPU
    failure = gpu_not_used(result["gpu_evidence"], "the Cycles render")
    assert failure is not None and failure.cause is Cause.GPU_NOT_USED


def test_evidence_seen_on_the_h100():
    """GpuWatch's real readings on the H100 (docs/gpu-evidence.md): torch on the CPU, then CUDA."""
    readings = dict(line.split(": ", 1) for line in H100_GPUWATCH.read_text().splitlines())
    cpu, cuda = json.loads(readings["cpu-only workload"]), json.loads(readings["cuda workload"])
    assert gpu_not_used(cpu, "the CPU workload").cause is Cause.GPU_NOT_USED
    assert gpu_not_used(cuda, "the CUDA workload") is None
