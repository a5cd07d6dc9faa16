"""Platform differences: Modal runs containers under gVisor, a user-space kernel that proxies only
part of the NVIDIA driver. Here gVisor is real (the engine's runsc runtime): the suites run under
it, detect it, and bring their files back. Its GPU refusals cannot happen without a GPU; those are
classified from public captured outputs (tests/data/captures/README.md) with the target's facts
stood in for a visible GPU, and the live check is README's `--target modal --runtime ...` run."""
import inspect
import json
from dataclasses import replace
from pathlib import Path

import modal
import pytest

from conftest import ROOT, rendergate_cli, run_suite
from rendergate.checks.graphics import require_vendor
from rendergate.checks.speed_gate import regression
from rendergate.core.diagnosis import Cause, CheckFailed, Facts
from rendergate.core.driver_capabilities import asked
from rendergate.core.grammars import classify
from rendergate.core.known_causes import driver_file_missing
from rendergate.core.manifest import load_variant
from rendergate.core.parsers import parse_vulkaninfo_summary
from rendergate.core.platforms import Platform, platform_of
from rendergate.core.verdict import CheckResult, Verdict
from rendergate.engines.modal import plan

CAPTURES = Path(__file__).parent / "data" / "captures"
CUINIT_REFUSED = (CAPTURES / "public" / "gvisor-nvproxy-cuinit-refused.txt").read_text()


@pytest.mark.parametrize("runtime, platform", [("default", Platform.NATIVE), ("gvisor", Platform.GVISOR)])
def test_suites_run_under_gvisor_and_say_so(runtime, platform, gvisor, good_images, suite):
    run = suite("--variant=xorg-glx", f"--runtime={runtime}", "--allow-no-gpu", "-k", "xorg_starts or glx_answers")
    verdict = run.verdicts["xorg-glx"]
    assert verdict["platform"] == platform, run.output
    assert verdict["host"]["sandbox_runtime"] == {"default": "engine default (runc)", "gvisor": "gVisor (runsc)"}[runtime]
    # The screenshot comes back from the container: gVisor hides its own /tmp from the engine.
    assert run.outcome("test_glx_answers", "xorg-glx")["outcome"] == "passed", run.output
    assert any((run.reports / "artifacts").rglob("xorg-screenshot.png"))
    assert run.leftover == []


def test_kernel_logs_tell_gvisor_from_a_native_kernel(gvisor, container_target):
    assert platform_of((CAPTURES / "cpu-host" / "gvisor-runsc-20221219-dmesg.txt").read_text()) == Platform.GVISOR
    assert platform_of((CAPTURES / "h100-2026-11-23" / "dmesg-nvrm.txt").read_text()) == Platform.NATIVE
    assert container_target("xorg-glx", runtime=gvisor).facts().platform == Platform.GVISOR
    assert container_target("xorg-glx").facts().platform == Platform.NATIVE


def test_a_driver_call_gvisor_refuses_is_the_platform_not_the_image(gvisor, container_target):
    facts = container_target("manim", runtime=gvisor).facts()
    with_gpu = replace(facts, nvidia_devices_visible=True)  # stand-in: no GPU here to be refused
    diagnosis = classify(CUINIT_REFUSED, with_gpu)
    assert diagnosis.cause == Cause.PLATFORM and "CUDA_ERROR_OPERATING_SYSTEM" in diagnosis.message
    assert "--runtime vm" in diagnosis.message
    assert classify(CUINIT_REFUSED, replace(with_gpu, platform=Platform.NATIVE)).cause == Cause.COMMAND_FAILED


def test_software_vulkan_under_gvisor_with_a_gpu_is_the_platform(gvisor, container_target):
    target = container_target("xorg-glx", runtime=gvisor)
    target._facts = replace(target.facts(), nvidia_devices_visible=True)  # stand-in: no GPU here
    devices = parse_vulkaninfo_summary(target.check("vulkaninfo --summary", "vulkaninfo").stdout)  # real lavapipe
    with pytest.raises(CheckFailed) as failed:
        require_vendor(target, devices, "Vulkan", "nvidia")
    # The container asked for `graphics` and, looked for for real, has no nvidia_icd.json.
    assert failed.value.diagnosis.cause == Cause.PLATFORM
    assert failed.value.diagnosis.message.startswith("nvidia_icd.json missing although the container asks for "
                                                     "NVIDIA_DRIVER_CAPABILITIES=graphics: the gVisor sandbox")


@pytest.mark.parametrize("platform, asked, cause", [
    (Platform.GVISOR, ("compute", "utility", "video"), Cause.PLATFORM),
    (Platform.NATIVE, ("compute", "utility", "video"), Cause.HOST_MISCONFIGURED),
    (Platform.GVISOR, ("compute", "utility"), Cause.DRIVER_CAPABILITY_MISSING),
    (Platform.NATIVE, tuple(asked("all")), Cause.HOST_MISCONFIGURED),
])
def test_a_missing_driver_file_is_blamed_on_who_withheld_it(platform, asked, cause):
    facts = Facts(nvidia_devices_visible=True, platform=platform, capabilities=asked)
    diagnosis = driver_file_missing("libnvidia-encode.so.1", facts)
    assert diagnosis.cause == cause
    assert ("video" in diagnosis.message) and "\n" not in diagnosis.message


def test_modal_sandbox_runtime_is_passed_through():
    variant = load_variant(ROOT / "images" / "manim")
    assert "runtime" not in plan(variant, "L4", None, 60, "r").sandbox  # Modal picks: gVisor today
    vm = plan(variant, "L4", None, 60, "r", runtime="vm")
    assert vm.sandbox["runtime"] == "vm"
    inspect.signature(modal.Sandbox.create).bind(*vm.command, image=None, **vm.sandbox)


def test_speedups_compare_only_on_the_same_platform():
    promoted = Verdict("manim", "run-1", "docker", "sha256:x", [], {"gpu_type": "none"}, {}, platform=Platform.NATIVE,
                       promotion={"to": "reg/manim:1"}, checks=[CheckResult("suites/x.py::test_parallel", "test_parallel",
                                                                            "workloads.parallel_frames", figures={"2 jobs vs 1": {"speedup": 1.8}})])
    assert regression(promoted, "none", Platform.NATIVE, "test_parallel", "2 jobs vs 1", 0.74, 0.2)
    assert regression(promoted, "none", Platform.GVISOR, "test_parallel", "2 jobs vs 1", 0.74, 0.2) is None


def test_merging_runc_and_gvisor_verdicts_shows_what_only_gvisor_breaks(gvisor, good_images, tmp_path):
    runs = {rt: run_suite(tmp_path / rt, "--variant=xorg-glx", f"--runtime={rt}", "--allow-no-gpu", "-k", "glx_answers")
            for rt in ("default", "gvisor")}
    native, sandboxed = (runs[rt].verdicts["xorg-glx"] for rt in ("default", "gvisor"))
    assert native["image"]["digest"] == sandboxed["image"]["digest"]
    gpu_type = native["host"]["gpu_type"]

    def merge(*paths):
        out = tmp_path / "merged.html"
        done = rendergate_cli("merge", *map(str, paths), f"--out={out}")
        assert done.returncode == 0, done.stderr
        return done.stdout, out.read_text()

    stdout, page = merge(runs["default"].reports, runs["gvisor"].reports)
    assert f"xorg-glx ({native['image']['ref']}) \u00b7 {gpu_type} \u00b7 gVisor" in page and "fails only under gVisor" not in stdout + page
    # Stand-in: on CPU no check fails under this gVisor; plant the failure a GPU host would see.
    sandboxed["checks"] = [{**c, "outcome": "failed", "message": "nvidia_icd.json missing ... [platform]"}
                           if c["check"] == "test_glx_answers" else c for c in sandboxed["checks"]]
    (tmp_path / "planted.json").write_text(json.dumps(sandboxed))
    stdout, page = merge(runs["default"].reports / "verdicts" / "xorg-glx.json", tmp_path / "planted.json")
    assert stdout.splitlines()[-1].startswith(f"xorg-glx on {gpu_type}: test_glx_answers fails only under gVisor")
    assert 'id="rg-platform"' in page
