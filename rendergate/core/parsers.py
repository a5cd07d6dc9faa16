"""Parsers for the output of the tools the checks run. Pure functions, tested on captures."""
from __future__ import annotations

import csv
import io
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field


@dataclass(frozen=True)
class GpuRecord:
    name: str
    uuid: str = ""
    pci_bus_id: str = ""


@dataclass(frozen=True)
class GpuInventory:
    """GPUs as one source (nvidia-smi or NVML) sees them."""
    driver_version: str
    gpus: tuple[GpuRecord, ...] = field(default_factory=tuple)
    cuda_version: str = ""

    @property
    def names(self) -> list[str]:
        return [g.name for g in self.gpus]


def parse_nvidia_smi_xml(text: str) -> GpuInventory:
    """`nvidia-smi -q -x`."""
    root = ET.fromstring(text)
    gpus = tuple(
        GpuRecord(name=(gpu.findtext("product_name") or "").strip(),
                  uuid=(gpu.findtext("uuid") or "").strip(),
                  pci_bus_id=(gpu.get("id") or "").strip())
        for gpu in root.findall("gpu"))
    return GpuInventory(driver_version=(root.findtext("driver_version") or "").strip(), gpus=gpus,
                        cuda_version=(root.findtext("cuda_version") or "").strip())


def parse_nvidia_smi_csv(text: str, fields: list[str]) -> list[dict[str, str]]:
    """`nvidia-smi --query-gpu=F1,F2 --format=csv,noheader`: one dict per GPU."""
    rows = csv.reader(io.StringIO(text.strip()), skipinitialspace=True)
    return [dict(zip(fields, (v.strip() for v in row))) for row in rows if row]


def parse_nvml_probe(data: dict) -> GpuInventory:
    """The JSON printed by probes/nvml.py."""
    gpus = tuple(GpuRecord(g["name"], g.get("uuid", ""), g.get("pci_bus_id", "")) for g in data["gpus"])
    return GpuInventory(driver_version=data["driver_version"], gpus=gpus,
                        cuda_version=data.get("cuda_driver_version", ""))


_ENCODER_LINE = re.compile(r"^\s*(?P<flags>[VAS][F.][S.][X.][B.][D.])\s+(?P<name>\S+)\s+(?P<desc>.*)$")


def parse_ffmpeg_encoders(text: str) -> dict[str, str]:
    """`ffmpeg -hide_banner -encoders`: encoder name -> description."""
    encoders = {}
    for line in text.splitlines():
        match = _ENCODER_LINE.match(line)
        if match and match.group("name") != "=":
            encoders[match.group("name")] = match.group("desc").strip()
    return encoders


@dataclass(frozen=True)
class GlxInfo:
    direct_rendering: bool
    vendor: str
    renderer: str
    version: str
    accelerated: bool | None  # None when glxinfo does not say (older Mesa, NVIDIA)


def parse_glxinfo(text: str) -> GlxInfo:
    """`glxinfo -B`."""
    def field_of(label: str) -> str:
        match = re.search(rf"^\s*{re.escape(label)}:\s*(.*)$", text, re.MULTILINE)
        return match.group(1).strip() if match else ""

    accelerated = field_of("Accelerated")
    return GlxInfo(
        direct_rendering=field_of("direct rendering").lower().startswith("yes"),
        vendor=field_of("OpenGL vendor string"),
        renderer=field_of("OpenGL renderer string"),
        version=field_of("OpenGL version string") or field_of("OpenGL core profile version string"),
        accelerated={"yes": True, "no": False}.get(accelerated.lower()),
    )


# Mesa's software rasterisers, as renderer strings and driver names show them.
SOFTWARE_RENDERERS = ("llvmpipe", "lavapipe", "softpipe", "swrast", "software rasterizer")


@dataclass(frozen=True)
class GraphicsDevice:
    """A device a graphics API (GLX, EGL, Vulkan) renders with."""
    api: str
    name: str
    vendor: str
    software: bool


def _is_software(renderer: str) -> bool:
    return any(s in renderer.lower() for s in SOFTWARE_RENDERERS)


def glx_device(info: GlxInfo) -> GraphicsDevice:
    return GraphicsDevice("GLX", info.renderer, info.vendor, _is_software(info.renderer) or info.accelerated is False)


def parse_eglinfo(text: str) -> list[GraphicsDevice]:
    """`eglinfo` (mesa-utils 8.5): the displays of its headless platforms (device, surfaceless)
    that initialised. A failed platform prints no vendor string and is left out."""
    devices = []
    for section in re.split(r"^(?=\w[\w ]* platform:$)", text, flags=re.MULTILINE):
        header = section.split(":", 1)[0]
        if header not in ("Device platform", "Surfaceless platform"):
            continue
        for chunk in re.split(r"^(?=Device #\d+:)", section, flags=re.MULTILINE):
            vendor = re.search(r"^EGL vendor string: (.*)$", chunk, re.MULTILINE)
            if not vendor:
                continue
            driver = re.search(r"^EGL driver name: (.*)$", chunk, re.MULTILINE)
            name = f"{header}: {vendor.group(1).strip()}" + (f" ({driver.group(1).strip()})" if driver else "")
            software = "EGL_MESA_device_software" in chunk or _is_software(driver.group(1) if driver else "")
            devices.append(GraphicsDevice("EGL", name, vendor.group(1).strip(), software))
    return devices


def parse_vulkaninfo_summary(text: str) -> list[GraphicsDevice]:
    """`vulkaninfo --summary`: its physical devices (a CPU type is a software rasteriser)."""
    devices = []
    for block in re.split(r"^GPU\d+:$", text, flags=re.MULTILINE)[1:]:
        fields = dict(re.findall(r"^\s*(\w+)\s*=\s*(.*?)\s*$", block, re.MULTILINE))
        vendor = "NVIDIA" if fields.get("vendorID", "").lower() == "0x10de" else fields.get("driverName", "")
        devices.append(GraphicsDevice("Vulkan", fields.get("deviceName", "?"), vendor,
                                      fields.get("deviceType", "").endswith("_CPU")))
    return devices


def parse_probe_output(stdout: str) -> dict:
    """Probes print one JSON object on their last line of stdout."""
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("probe printed no JSON result")


@dataclass(frozen=True)
class CyclesDevice:
    name: str
    type: str
    id: str
    use: bool


def parse_cycles_devices(data: dict) -> dict[str, list[CyclesDevice]]:
    """The device lists from probes/cycles.py: device type -> devices Cycles offers for it."""
    return {kind: [CyclesDevice(d["name"], d["type"], d["id"], d["use"]) for d in devices]
            for kind, devices in data["devices"].items()}


def parse_driver_version(proc_version: str) -> str | None:
    """The kernel module's version in /proc/driver/nvidia/version, of NVIDIA's proprietary
    ("NVIDIA UNIX x86_64 Kernel Module  535.104.05 ...") and open ("NVIDIA UNIX Open Kernel
    Module for x86_64  580.159.04 ...") modules alike; None without a driver."""
    found = re.search(r"Kernel Module(?: for \S+)?\s+(\d+\.\d+(?:\.\d+)?)", proc_version)
    return found.group(1) if found else None
