"""GPUs as NVML sees them inside the target."""
import json
import sys

import pynvml


def text(value):
    return value.decode() if isinstance(value, bytes) else value


try:
    pynvml.nvmlInit()
except pynvml.NVMLError as e:
    print(f"{type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(3)
gpus = []
for index in range(pynvml.nvmlDeviceGetCount()):
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    gpus.append({
        "name": text(pynvml.nvmlDeviceGetName(handle)),
        "uuid": text(pynvml.nvmlDeviceGetUUID(handle)),
        "pci_bus_id": text(pynvml.nvmlDeviceGetPciInfo(handle).busId),
        "memory_total": pynvml.nvmlDeviceGetMemoryInfo(handle).total,
    })
cuda = pynvml.nvmlSystemGetCudaDriverVersion()
print(json.dumps({
    "driver_version": text(pynvml.nvmlSystemGetDriverVersion()),
    "cuda_driver_version": f"{cuda // 1000}.{cuda % 1000 // 10}",
    "gpus": gpus,
}))
