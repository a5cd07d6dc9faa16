"""GPUs as NVML sees them inside the target: identity, architecture, memory, modes, encoder
state, and any Xid error NVML reports while the probe listens. A field the GPU or driver does
not support is null, never left out. NVML that cannot start says why on stderr (exit 3)."""
import json
import sys

import pynvml

ARCHITECTURES = {getattr(pynvml, n): n.removeprefix("NVML_DEVICE_ARCH_").lower()
                 for n in dir(pynvml) if n.startswith("NVML_DEVICE_ARCH_")}
BRANDS = {getattr(pynvml, n): n.removeprefix("NVML_BRAND_").lower().replace("_", " ")
          for n in dir(pynvml) if n.startswith("NVML_BRAND_") and n != "NVML_BRAND_COUNT"}
ENCODER_QUERIES = {"h264": "NVML_ENCODER_QUERY_H264", "hevc": "NVML_ENCODER_QUERY_HEVC", "av1": "NVML_ENCODER_QUERY_AV1"}
XID_LISTEN_MS = 500


def text(value):
    return value.decode() if isinstance(value, bytes) else value


def optional(call, *args):
    """NVML's answer, or None where this GPU or driver does not support the query."""
    try:
        return call(*args)
    except pynvml.NVMLError:
        return None


def encoder_capacity(handle):
    out = {}
    for codec, constant in ENCODER_QUERIES.items():
        out[codec] = optional(pynvml.nvmlDeviceGetEncoderCapacity, handle, getattr(pynvml, constant)) \
            if hasattr(pynvml, constant) else None
    return out


def xid_errors(handles):
    """Xid critical errors NVML delivers while we listen; None where events are unsupported."""
    try:
        events = pynvml.nvmlEventSetCreate()
        for handle in handles:
            pynvml.nvmlDeviceRegisterEvents(handle, pynvml.nvmlEventTypeXidCriticalError, events)
    except pynvml.NVMLError:
        return None
    seen = []
    try:
        while True:
            data = pynvml.nvmlEventSetWait(events, XID_LISTEN_MS)
            seen.append({"xid": data.eventData, "gpu": text(pynvml.nvmlDeviceGetUUID(data.device))})
    except pynvml.NVMLError:  # NVML_ERROR_TIMEOUT: nothing more
        pass
    finally:
        pynvml.nvmlEventSetFree(events)
    return seen


def gpu(index):
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    pci = pynvml.nvmlDeviceGetPciInfo(handle)
    mig = optional(pynvml.nvmlDeviceGetMigMode, handle)
    sessions = optional(pynvml.nvmlDeviceGetEncoderSessions, handle)
    capability = optional(pynvml.nvmlDeviceGetCudaComputeCapability, handle)
    return handle, {
        "index": index,
        "name": text(pynvml.nvmlDeviceGetName(handle)),
        "uuid": text(pynvml.nvmlDeviceGetUUID(handle)),
        "pci_bus_id": text(pci.busId),
        "pci_device_id": f"{pci.pciDeviceId >> 16:04x}",
        "pci_subsystem_id": f"{pci.pciSubSystemId:08x}",
        "brand": BRANDS.get(optional(pynvml.nvmlDeviceGetBrand, handle)),
        "architecture": ARCHITECTURES.get(optional(pynvml.nvmlDeviceGetArchitecture, handle), "unknown"),
        "compute_capability": f"{capability[0]}.{capability[1]}" if capability else None,
        "memory_total": pynvml.nvmlDeviceGetMemoryInfo(handle).total,
        "mig_mode": None if mig is None else {"current": mig[0], "pending": mig[1]},
        "persistence_mode": optional(pynvml.nvmlDeviceGetPersistenceMode, handle),
        "encoder_capacity": encoder_capacity(handle),
        "encoder_sessions": None if sessions is None else len(sessions),
    }


try:
    pynvml.nvmlInit()
except pynvml.NVMLError as e:
    print(f"{type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(3)
found = [gpu(i) for i in range(pynvml.nvmlDeviceGetCount())]
cuda = pynvml.nvmlSystemGetCudaDriverVersion()
print(json.dumps({
    "driver_version": text(pynvml.nvmlSystemGetDriverVersion()),
    "cuda_driver_version": f"{cuda // 1000}.{cuda % 1000 // 10}",
    "xid_errors": xid_errors([handle for handle, _ in found]) if "--xid" in sys.argv else None,
    "gpus": [info for _, info in found],
}))
