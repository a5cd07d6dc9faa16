"""A canonical Cycles frame: rendered on the CPU against its reference, and on the GPU backend
the variant requires, where it must agree with the CPU picture and beat it by the manifest's
`thresholds.cycles_gpu_speedup` (a silent CPU fallback cannot)."""
import pytest

from rendergate.checks.media import load_image, load_reference, require_not_blank
from rendergate.checks.timing import Speedup
from rendergate.checks.workloads import cycles_reference, render_frames
from rendergate.core.requirements import declare
from rendergate.core.schema import SIZE, integer, size, table
from rendergate.plugin import requires

CYCLES_FRAME = declare(
    "workloads.cycles_frame", table({"size": size, "samples": integer(1, 4096)}),
    f'{{ size = "320x180", samples = 32 }} (size {SIZE}; samples 1 to 4096)',
    "a Cycles frame renders on the CPU as the reference, and on the GPU backend alike and faster",
    needs=("requirements.cycles_devices",), thresholds={"cycles_gpu_speedup": 3.0},
    example='{ size = "320x180", samples = 32 }')
pytestmark = requires(CYCLES_FRAME)

# Same build, same seed, same device: the CPU frame is all but identical to the reference
# (x86 float paths may differ in the last bits): mean abs diff of 2 of 255.
REFERENCE_TOLERANCE = 2.0
# CPU and GPU sample the same scene with different noise; at 32 samples the pictures agree to a
# mean abs diff of a few levels, while a wrong picture (missing object, black) is off by tens.
GPU_CPU_TOLERANCE = 8.0


def render(target, requirement, device: str, name: str):
    out = f"{target.workdir}/{name}"
    target.check(f"rm -rf {out}", "rm -rf (cleaning)")
    said = render_frames(target, out, 1, requirement["size"], requirement["samples"], device=device).output
    return load_image(target.fetch(f"{out}/frame_0001.png")), said


def test_cycles_frame_on_cpu(target, requirement, compare):
    """One Cycles frame on the CPU, matched against its reference."""
    picture, said = render(target, requirement, "CPU", "cycles-cpu")
    require_not_blank(picture, "the Cycles frame")
    compare("cycles-frame-cpu", picture, load_reference(cycles_reference(requirement["size"], requirement["samples"])),
            REFERENCE_TOLERANCE, "the Cycles CPU frame", said)


@pytest.mark.needs_gpu
@pytest.mark.timed
def test_cycles_gpu_speedup(target, variant, requirement, speed_gate, measure, compare):
    """The Cycles frame on the GPU backend, timed against the CPU: the same picture, faster."""
    backend = variant.requirements["cycles_devices"][0]
    cpu, _ = render(target, requirement, "CPU", "cycles-cpu")
    gpu, said = render(target, requirement, backend, f"cycles-{backend}")
    require_not_blank(gpu, f"the Cycles {backend} frame")
    compare(f"cycles-frame-{backend}", gpu, cpu, GPU_CPU_TOLERANCE, f"the {backend} frame against the CPU one", said)
    base, cand = measure(lambda: render(target, requirement, "CPU", "cycles-cpu"),
                         lambda: render(target, requirement, backend, f"cycles-{backend}"),
                         variant.thresholds.get("repeats", 3), warm_up=lambda: None)
    speed_gate(f"{backend} vs CPU", Speedup(base, cand, variant.thresholds["cycles_gpu_speedup"]))
