"""Host readiness, before anything else a GPU host says is trusted: the NVIDIA driver is loaded,
its device nodes exist, persistence mode is on, NVML reports no Xid error while it listens (nor
the kernel log, where readable), and, where `dcgmi` is installed, a level-1 DCGM diagnostic
passes (its JSON is kept). One check, on the variants that declare `host_ready` (the host)."""
import json

from rendergate.checks.readiness import dcgm_failures, driver_missing, kernel_xids
from rendergate.core.diagnosis import Cause, CheckFailed
from rendergate.core.gpuinfo import gpus_from_probe
from rendergate.core.requirements import declare
from rendergate.core.schema import boolean
from rendergate.plugin import requires

HOST_READY = declare("host_ready", boolean,
                     "true or false: the host's driver, devices, persistence mode, Xid errors, DCGM diagnostic",
                     "the host is ready: driver loaded, device nodes, persistence mode, no Xid error, DCGM level 1")
pytestmark = requires(HOST_READY)


def test_host_ready(target, without_gpu, artifacts):
    probe = target.run_probe("nvml", "--xid")
    if probe.rc != 0:
        without_gpu(CheckFailed.of(driver_missing(probe.stderr)))
    data = json.loads(probe.stdout)
    gpus = gpus_from_probe(data)
    if not gpus:
        without_gpu(CheckFailed(Cause.NO_GPU_DEVICE, "the NVIDIA driver is loaded but NVML lists no GPU"))
    nodes = target.run("ls /dev/nvidiactl /dev/nvidia[0-9]* 2>/dev/null").stdout.split()
    missing = [f"/dev/nvidia{g.index}" for g in gpus if f"/dev/nvidia{g.index}" not in nodes]
    if "/dev/nvidiactl" not in nodes or missing:
        raise CheckFailed(Cause.NO_GPU_DEVICE, f"device nodes missing: {', '.join(missing or ['/dev/nvidiactl'])} "
                                               "(load nvidia.ko and run nvidia-modprobe)")
    off = [g.label for g in gpus if g.persistence_mode == 0]
    if off:
        raise CheckFailed(Cause.HOST_MISCONFIGURED, f"persistence mode is off on {', '.join(off)}: start "
                                                    "nvidia-persistenced (or nvidia-smi -pm 1)")
    xids = [f"Xid {e['xid']} on {e['gpu']}" for e in data["xid_errors"] or []]
    xids += kernel_xids(target.run("dmesg 2>/dev/null | grep 'NVRM: Xid'").stdout)
    if xids:
        raise CheckFailed(Cause.GPU_FAULT, f"{'; '.join(xids[:3])}: the GPU reported errors; see the kernel log "
                                           "and NVIDIA's Xid catalogue before trusting this host")
    if target.run("command -v dcgmi").rc == 0:
        diag = target.check("dcgmi diag -r 1 -j", "dcgmi diag -r 1", timeout=600)
        artifacts("dcgm-diag-r1.json", diag.stdout.encode())
        failed = dcgm_failures(json.loads(diag.stdout))
        if failed:
            raise CheckFailed(Cause.GPU_FAULT, f"DCGM level-1 diagnostic failed: {'; '.join(failed[:3])}")
