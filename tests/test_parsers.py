"""Parsers on real captured output (tests/data/captures/README.md names each source)."""
import json
from pathlib import Path

from rendergate.checks.xorg import xorg_bus_id
from rendergate.core.parsers import (
    parse_cycles_devices,
    parse_eglinfo,
    parse_ffmpeg_encoders,
    parse_glxinfo,
    parse_nvidia_smi_csv,
    parse_nvidia_smi_xml,
    parse_nvml_probe,
    parse_probe_output,
    parse_vulkaninfo_summary,
)

CAPTURES = Path(__file__).parent / "data" / "captures"
H100 = CAPTURES / "h100-2026-11-23"
CPU = CAPTURES / "cpu-host"


def test_nvidia_smi_xml_on_h100():
    info = parse_nvidia_smi_xml((H100 / "nvidia-smi-q-x.xml").read_text())
    assert info.names == ["NVIDIA H100 80GB HBM3"]
    assert info.driver_version == "580.159.04"
    assert info.cuda_version == "13.0"
    assert info.gpus[0].pci_bus_id == "00000000:00:06.0"
    assert info.gpus[0].uuid.startswith("GPU-")


def test_nvidia_smi_csv_on_h100():
    rows = parse_nvidia_smi_csv((H100 / "nvidia-smi-query.csv").read_text(),
                                ["name", "pci.bus_id", "driver_version", "memory.total"])
    assert rows == [{"name": "NVIDIA H100 80GB HBM3", "pci.bus_id": "00000000:00:06.0",
                     "driver_version": "580.159.04", "memory.total": "81559 MiB"}]


def test_nvml_probe_agrees_with_nvidia_smi_on_h100():
    nvml = parse_nvml_probe(json.loads((H100 / "nvml-probe.json").read_text()))
    smi = parse_nvidia_smi_xml((H100 / "nvidia-smi-q-x.xml").read_text())
    assert (nvml.names, nvml.driver_version) == (smi.names, smi.driver_version)


def test_ffmpeg_encoders_debian_5_1_lists_nvenc_but_not_av1():
    encoders = parse_ffmpeg_encoders((CPU / "debian-ffmpeg5.1-encoders.txt").read_text())
    assert "h264_nvenc" in encoders and "hevc_nvenc" in encoders
    assert "av1_nvenc" not in encoders
    assert encoders["libx264"].startswith("libx264 H.264")
    assert "=" not in encoders  # the legend's "V..... = Video" lines are not encoders


def test_ffmpeg_encoders_static_9_lists_av1_nvenc():
    encoders = parse_ffmpeg_encoders((H100 / "ffmpeg9-encoders.txt").read_text())
    assert {"h264_nvenc", "hevc_nvenc", "av1_nvenc"} <= set(encoders)


def test_glxinfo_on_llvmpipe():
    info = parse_glxinfo((CPU / "mesa-llvmpipe-glxinfo-B.txt").read_text())
    assert info.direct_rendering
    assert info.renderer.startswith("llvmpipe")
    assert info.vendor == "Mesa/X.org"
    assert info.accelerated is False
    assert "Mesa 22.3.6" in info.version


def test_cycles_devices_without_gpu_list_only_the_cpu():
    devices = parse_cycles_devices(parse_probe_output((CPU / "bpy5.0.1-cycles-devices.json").read_text()))
    assert set(devices) == {"CUDA", "OPTIX", "HIP", "ONEAPI"}
    assert all(d.type == "CPU" for listed in devices.values() for d in listed)


def test_probe_output_is_the_last_json_line():
    assert parse_probe_output('log line\n{"a": 1}\n') == {"a": 1}


def test_xorg_bus_id_from_the_h100_nvidia_smi():
    rows = parse_nvidia_smi_csv((H100 / "nvidia-smi-query.csv").read_text(), ["name", "pci.bus_id"])
    assert xorg_bus_id(rows[0]["pci.bus_id"]) == "PCI:0:6:0"
    assert xorg_bus_id("00000000:AF:1F.7") == "PCI:175:31:7"


def test_eglinfo_headless_displays_on_mesa():
    devices = parse_eglinfo((CPU / "mesa-eglinfo.txt").read_text())
    # GBM, Wayland and X11 fail without a display server; the headless platforms initialise.
    assert [d.name.split(":")[0] for d in devices] == ["Surfaceless platform", "Device platform"]
    assert all(d.vendor == "Mesa Project" and d.software for d in devices)


def test_vulkaninfo_summary_on_lavapipe():
    [device] = parse_vulkaninfo_summary((CPU / "mesa-vulkaninfo-summary.txt").read_text())
    assert device.name.startswith("llvmpipe") and device.software and device.vendor == "llvmpipe"
