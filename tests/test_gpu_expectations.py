"""What each GPU can do (rendergate/data/gpus.toml), read from real NVML output; driver
capabilities against requirements and container files; host readiness on a host with no driver.

The H100 data is the lent machine's (tests/data/captures/h100-2026-11-23/nvml-probe-v2.json);
the no-driver host and the containers are this machine's, for real."""
import json
import shutil
import tomllib

import pytest

from conftest import ROOT, rendergate_cli
from rendergate.checks.readiness import kernel_xids
from rendergate.core.assets import CAPABILITY_TABLE as TABLE
from rendergate.core.driver_capabilities import DRIVER_FILES, mismatches
from rendergate.core.gpuinfo import gpus_from_probe, lookup, nvenc_lacking, optix_lacking
from rendergate.core.host_gpus import host_gpu_names
from rendergate.core.manifest import load_variant
from rendergate.engines.docker import DockerTarget
from rendergate.engines.docker_engine import owner_label

H100 = ROOT / "tests" / "data" / "captures" / "h100-2026-11-23"


@pytest.fixture
def h100():
    return gpus_from_probe(json.loads((H100 / "nvml-probe-v2.json").read_text()))[0]


def test_every_table_row_names_its_source_and_covers_the_required_models():
    rows = tomllib.loads(TABLE.read_text())["gpu"]
    assert all(row["source"].strip() for row in rows)
    models = {row["model"] for row in rows}
    assert {"T4", "A10", "A10G", "A100", "L4", "L40S", "H100", "H200", "B200", "GeForce RTX 4090"} <= models


def test_h100_is_identified_from_nvml(h100):
    assert h100.known is not None and h100.known.model == "H100"
    assert (h100.architecture, h100.compute_capability, h100.pci_device_id) == ("hopper", "9.0", "2330")
    assert h100.persistence_mode == 1 and h100.mig_mode == {"current": 0, "pending": 0}
    assert lookup("an unnamed GPU", h100.pci_device_id).model == "H100"  # by PCI device id alone


def test_h100_lacks_nvenc_but_runs_optix(h100):
    reason = nvenc_lacking(h100, "h264_nvenc")
    assert reason.startswith("NVIDIA H100 80GB HBM3 has no NVENC engine")
    assert optix_lacking(h100, "OPTIX") is None and optix_lacking(h100, "CUDA") is None


def test_nvml_encoder_capacity_does_not_tell_nvenc(h100):
    """NVML reports encoder capacity 100 on the H100, which has no NVENC: only the table tells."""
    assert h100.encoder_capacity["h264"] == 100 and h100.known.nvenc == 0


def test_unknown_gpu_is_left_to_runtime_probing():
    """The H100's record under a name and PCI id the table does not list."""
    data = json.loads((H100 / "nvml-probe-v2.json").read_text())
    data["gpus"][0].update(name="NVIDIA Unreleased X1", pci_device_id="ffff")
    unknown = gpus_from_probe(data)[0]
    assert unknown.known is None and nvenc_lacking(unknown, "h264_nvenc") is None


def test_kernel_log_xids_are_read():
    assert kernel_xids((H100 / "dmesg-nvrm.txt").read_text()) == []  # the H100's log: NVRM lines, no Xid


def test_driver_files_present_but_not_asked_for(known_bad_image, engine, tmp_path):
    """A real container of an image that ships libnvidia-encode.so.1 itself, asking for no `video`."""
    image = known_bad_image("driver-file-not-asked")
    folder = tmp_path / "manim"
    shutil.copytree(ROOT / "images" / "manim", folder)
    manifest = folder / "manifest.toml"
    manifest.write_text(manifest.read_text().replace('["compute", "utility", "video"]', '["compute", "utility"]'))
    target = DockerTarget.start(engine, load_variant(folder), image, "tests-expectations", owner_label(), tmp_path,
                                default_timeout=120)
    try:
        value = target.run("printf %s \"$NVIDIA_DRIVER_CAPABILITIES\"").stdout
        absent, unasked = mismatches(value, target.driver_files(DRIVER_FILES))
    finally:
        engine.remove(target.container.id)
    assert value == "compute,utility"
    assert unasked == ["libnvidia-encode.so.1 (video)"]
    assert "libcuda.so.1 (compute)" in absent  # asked, and no toolkit here to inject it


def test_container_without_video_capability_fails_for_nvenc(good_images, suite, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(ROOT / "images" / "manim", images / "manim")
    manifest = images / "manim" / "manifest.toml"
    manifest.write_text(manifest.read_text().replace('["compute", "utility", "video"]', '["compute", "utility"]'))
    run = suite(f"--images-dir={images}", "--variant=manim", "--image=rendergate/manim:dev", "--allow-no-gpu",
                "-k", "test_capabilities_cover_requirements")
    result = run.outcome("test_capabilities_cover_requirements", "manim")
    assert (result["outcome"], result["cause"]) == ("failed", "driver-capability-missing"), run.output
    assert "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in result["message"]
    assert "nvenc needs video (libnvidia-encode.so.1, libnvcuvid.so.1)" in result["message"]


def test_host_without_driver_fails_readiness(suite):
    if host_gpu_names():
        pytest.skip("this host has an NVIDIA driver: the known-bad case is a host without one")
    run = suite("--variant=host", "-k", "test_host_ready")
    result = run.outcome("test_host_ready", "host")
    assert (result["outcome"], result["cause"]) == ("failed", "no-driver"), run.output
    assert "NVMLError_LibraryNotFound" in result["message"]
    allowed = suite("--variant=host", "-k", "test_host_ready", "--allow-no-gpu")
    assert allowed.outcome("test_host_ready", "host")["outcome"] == "no-gpu"


@pytest.mark.parametrize("verdict, passes", [("h100-host-nvenc-unsupported.json", True),
                                             ("h100-host-nvenc-must-have.json", False)])
def test_h100_verdicts_gate_as_the_hardware_allows(tmp_path, verdict, passes):
    """The H100's own verdicts (NVENC required, no NVENC engine): a hardware limit does not fail
    the variant, unless its manifest says it must have NVENC on every host. Judged as the gate
    judges a current verdict; the gate itself refuses these as stale (an older rendergate, the
    host manifest of that session), as it must."""
    from rendergate.core.judging import judge, state_of
    from rendergate.core.outcomes import State
    from rendergate.core.verdict import load

    problems = judge(load(ROOT / "tests" / "data" / "verdicts" / verdict))
    assert (not problems) == passes, problems
    if not passes:
        assert state_of(problems) is State.FAILED
        assert any(p.subject == "nvenc" and "has no NVENC engine" in p.detail and "[gpu-lacks-engine]" in p.detail
                   for p in problems), problems
    (tmp_path / "verdicts").mkdir()
    shutil.copy(ROOT / "tests" / "data" / "verdicts" / verdict, tmp_path / "verdicts" / "host.json")
    done = rendergate_cli("gate", "host", reports=tmp_path)
    assert done.returncode == 1 and "stale: the verdict was made by rendergate 0.1.0+ge422abb74cc2-dirty" in done.stderr