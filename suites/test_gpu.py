"""(a) GPU visibility: the target sees NVIDIA devices, and nvidia-smi and NVML agree on them."""
import pytest

from rendergate.core.diagnosis import Cause, CheckFailed
from rendergate.core.parsers import parse_nvidia_smi_xml, parse_nvml_probe
from rendergate.core.requirements import declare
from rendergate.core.schema import boolean
from rendergate.plugin import requires

GPU = declare("gpu", boolean, "true or false", "NVIDIA devices are visible; nvidia-smi and NVML agree on them",
              capabilities={"utility", "compute"})
pytestmark = [requires(GPU), pytest.mark.needs_gpu]


def test_nvidia_device_nodes(target):
    nodes = target.run("ls /dev/nvidia*").stdout.split()
    if not any(n.rstrip("0123456789") == "/dev/nvidia" and n != "/dev/nvidia" for n in nodes):
        raise CheckFailed(Cause.NO_GPU_DEVICE, "no /dev/nvidia[0-9] in the target: start the container with "
                                               "a GPU (--gpus all / the NVIDIA runtime)")
    if "/dev/nvidiactl" not in nodes:
        raise CheckFailed(Cause.NO_GPU_DEVICE, "/dev/nvidiactl missing: the NVIDIA runtime did not set up the container")


def test_nvidia_smi_and_nvml_agree(target):
    smi = parse_nvidia_smi_xml(target.check("nvidia-smi -q -x", "nvidia-smi").stdout)
    nvml = parse_nvml_probe(target.probe("nvml"))
    if not smi.gpus:
        raise CheckFailed(Cause.NO_GPU_DEVICE, "nvidia-smi lists no GPU")
    for what, a, b in (("GPU count", len(smi.gpus), len(nvml.gpus)), ("GPU names", smi.names, nvml.names),
                       ("driver version", smi.driver_version, nvml.driver_version)):
        if a != b:
            raise CheckFailed(Cause.GPU_INFO_MISMATCH, f"nvidia-smi and NVML disagree on the {what}: {a} vs {b}")
