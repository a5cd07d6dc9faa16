"""(e) Cycles: bpy loads, lists the required GPU backends' devices, and really renders on them.

bpy accepts any compute device type and renders on the CPU when no GPU device works, without an
error. So the render check trusts only what NVML saw on the GPU during the render: fail closed.
"""
import pytest

from rendergate.core.diagnosis import Cause, CheckFailed
from rendergate.core.driver_capabilities import file_serving
from rendergate.core.evidence import gpu_not_used
from rendergate.core.parsers import parse_cycles_devices
from rendergate.core.requirements import OPTIX, declare
from rendergate.core.schema import list_of, one_of
from rendergate.plugin import requires

DEVICE_TYPES = ("OPTIX", "CUDA", "HIP", "ONEAPI", "METAL")
CYCLES_DEVICES = declare(
    "cycles_devices", list_of(one_of(DEVICE_TYPES)),
    f'a list of Cycles device types, e.g. ["OPTIX", "CUDA"] (known: {", ".join(sorted(DEVICE_TYPES))})',
    "bpy loads Cycles, lists each backend's GPU devices and really renders on them (NVML saw it)",
    item_capabilities={"CUDA": {"compute"}, "OPTIX": {"compute", "graphics"}}, gpu_feature=OPTIX,
    example='["OPTIX", "CUDA"]')
pytestmark = requires(CYCLES_DEVICES)


def cycles_devices(target):
    """Cycles' device lists, probed once per target."""
    if "cycles_devices" not in target.memo:
        target.memo["cycles_devices"] = parse_cycles_devices(target.probe("cycles_devices", "list"))
    return target.memo["cycles_devices"]


def gpu_devices(target, backend):
    return [d for d in cycles_devices(target).get(backend, []) if d.type != "CPU"]


def test_bpy_loads_cycles(target):
    devices = cycles_devices(target)
    if not any(d.type == "CPU" for listed in devices.values() for d in listed):
        raise CheckFailed(Cause.OUTPUT_INVALID, "Cycles lists no device at all, not even the CPU")


@pytest.mark.needs_gpu
def test_cycles_lists_gpu_device(target, requirement):
    if gpu_devices(target, requirement):
        return
    library = file_serving(requirement)
    missing = target.missing_driver_file(library) if library else None
    if missing:
        raise CheckFailed.of(missing)
    raise CheckFailed(Cause.NO_GPU_DEVICE, f"Cycles lists no {requirement} device although the driver files are "
                                           "present: is the GPU supported by this Blender build?")


@pytest.mark.needs_gpu
def test_cycles_renders_on_gpu(target, requirement, artifacts):
    if not gpu_devices(target, requirement):
        raise CheckFailed(Cause.NO_GPU_DEVICE, f"Cycles lists no {requirement} device (see test_cycles_lists_gpu_device)")
    out = f"{target.workdir}/cycles-{requirement}.png"
    result = target.probe("cycles_devices", "render", requirement, out)
    artifacts(f"cycles-{requirement}.png", target.fetch(out))
    failure = gpu_not_used(result["gpu_evidence"],
                           f"the Cycles render with {requirement} devices {result['enabled_devices']}")
    if failure:
        raise CheckFailed.of(failure)
