"""What a GPU is and what it can do: the one place NVML's view of a GPU (probes/nvml.py) becomes
a GpuInfo, matched against the capability table (data/gpus.toml), and where a check's GPU
feature is judged supported or not.

The same image is right on one GPU and wrong on another: NVENC on an H100 is a hardware limit,
not an image fault. A GPU the table does not know is judged by what its checks find.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache

from rendergate.core.assets import CAPABILITY_TABLE

# Cycles' OptiX backend runs on GPUs of compute capability 5.0 (Maxwell) and newer; RT cores only
# make it faster (Blender manual, "GPU Rendering": OptiX).
OPTIX_MIN_COMPUTE = (5, 0)


@dataclass(frozen=True)
class GpuModel:
    """A row of data/gpus.toml: what a GPU model can do."""
    model: str
    architecture: str
    gpu_class: str
    nvenc: int
    nvdec: int
    encode: tuple[str, ...]
    rt_cores: bool
    session_cap: int
    source: str


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    uuid: str
    pci_bus_id: str
    pci_device_id: str
    brand: str | None
    architecture: str
    compute_capability: str | None
    memory_total: int
    driver_version: str
    cuda_driver_version: str
    mig_mode: dict | None
    persistence_mode: int | None
    encoder_capacity: dict
    encoder_sessions: int | None
    known: GpuModel | None  # None: a model the table does not list

    @property
    def label(self) -> str:
        return f"GPU {self.index} ({self.name})"


@lru_cache(maxsize=1)
def capability_table() -> list[tuple[list[re.Pattern], list[str], GpuModel]]:
    rows = []
    for row in tomllib.loads(CAPABILITY_TABLE.read_text())["gpu"]:
        rows.append(([re.compile(p, re.IGNORECASE) for p in row["match"]], row["pci_device_ids"], GpuModel(
            model=row["model"], architecture=row["architecture"], gpu_class=row["class"], nvenc=row["nvenc"],
            nvdec=row["nvdec"], encode=tuple(row["encode"]), rt_cores=row["rt_cores"],
            session_cap=row["session_cap"], source=row["source"])))
    return rows


def lookup(name: str, pci_device_id: str = "") -> GpuModel | None:
    for patterns, device_ids, model in capability_table():
        if any(p.search(name) for p in patterns) or pci_device_id.lower() in device_ids:
            return model
    return None


def gpus_from_probe(data: dict) -> list[GpuInfo]:
    """GpuInfo for each GPU in the JSON of probes/nvml.py."""
    return [GpuInfo(
        index=g["index"], name=g["name"], uuid=g["uuid"], pci_bus_id=g["pci_bus_id"], pci_device_id=g["pci_device_id"],
        brand=g["brand"], architecture=g["architecture"], compute_capability=g["compute_capability"],
        memory_total=g["memory_total"], driver_version=data["driver_version"],
        cuda_driver_version=data["cuda_driver_version"], mig_mode=g["mig_mode"], persistence_mode=g["persistence_mode"],
        encoder_capacity=g["encoder_capacity"], encoder_sessions=g["encoder_sessions"],
        known=lookup(g["name"], g["pci_device_id"])) for g in data["gpus"]]


def nominal(gpu_type: str) -> GpuInfo:
    """A GPU known only by its type name (a Modal GPU type, before a sandbox ran on it)."""
    return GpuInfo(index=0, name=gpu_type, uuid="", pci_bus_id="", pci_device_id="", brand=None, architecture="unknown",
                   compute_capability=None, memory_total=0, driver_version="", cuda_driver_version="", mig_mode=None,
                   persistence_mode=None, encoder_capacity={}, encoder_sessions=None, known=lookup(gpu_type))


def no_nvenc_engine(model: GpuModel | None, name: str) -> str | None:
    """Why a GPU of this model has no NVENC at all, by the table; None when it has, or is unknown.
    The one answer to "does this GPU have NVENC?": the NVENC checks and the diagnosis of a
    refused session both ask it."""
    if model and model.nvenc == 0:
        return f"{name} has no NVENC engine ({model.model}: {model.nvdec} NVDEC, 0 NVENC; source: {model.source})"
    return None


def nvenc_lacking(gpu: GpuInfo, item: str | None = None) -> str | None:
    """Why `gpu` cannot encode with NVENC (with encoder `item`: its codec), by the table; None
    when it can, or when the table does not know the GPU."""
    model = gpu.known
    codec = _codec(item)
    if model and codec and codec not in model.encode and model.nvenc:
        return f"{gpu.name}'s NVENC does not encode {codec.upper()} ({model.model} encodes {', '.join(model.encode)}; source: {model.source})"
    return no_nvenc_engine(model, gpu.name)


def optix_lacking(gpu: GpuInfo, item: str | None = None) -> str | None:
    """Why `gpu` cannot run Cycles' OptiX backend (item: the Cycles backend checked); None when it
    can, or when its compute capability is not known."""
    if (item or "OPTIX") != "OPTIX" or not gpu.compute_capability:
        return None
    major, minor = (int(n) for n in gpu.compute_capability.split("."))
    if (major, minor) < OPTIX_MIN_COMPUTE:
        return f"{gpu.name} (compute capability {gpu.compute_capability}) is older than OptiX supports (5.0)"
    return None


def _codec(item: str | None) -> str | None:
    """The codec of an ffmpeg NVENC encoder name (h264_nvenc -> h264)."""
    return item.removesuffix("_nvenc") if item and item.endswith("_nvenc") else None
