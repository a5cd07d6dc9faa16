"""NVIDIA_DRIVER_CAPABILITIES, for containers: the toolkit injects the driver's files by
capability, so a container that does not ask for `video` has no libnvidia-encode, whatever the
image holds. Checked both ways: what the requirements need against what the container asks for
(decided without a GPU), and, on a GPU host, what it asks for against the files it got. And the
image must not carry the driver's files itself (decided without a GPU)."""
import pytest

from rendergate.core.diagnosis import Cause, CheckFailed
from rendergate.core.driver_capabilities import DRIVER_FILES, mismatches, uncovered
from rendergate.core.known_causes import asked_files_missing, bundled_driver_wrong, driver_baked_in
from rendergate.core.parsers import parse_driver_version

pytestmark = [pytest.mark.requires("gpu"), pytest.mark.container_only]


def capabilities_of(target) -> str:
    return target.run("printf %s \"$NVIDIA_DRIVER_CAPABILITIES\"").stdout.strip()


def test_capabilities_cover_requirements(target):
    value = capabilities_of(target)
    gaps = uncovered(target.variant, value)
    if gaps:
        raise CheckFailed(Cause.DRIVER_CAPABILITY_MISSING,
                          f"the container asks NVIDIA_DRIVER_CAPABILITIES={value or '(unset)'}, but {'; '.join(gaps)}: "
                          "add them to run.driver_capabilities")


@pytest.mark.needs_gpu
def test_driver_files_match_capabilities(target, request):
    value = capabilities_of(target)
    absent, unasked = mismatches(value, target.driver_files(DRIVER_FILES))
    if unasked:  # not a fault here, but the next host's toolkit may not be as generous
        request.node.add_report_section("call", "driver files present but not asked for",
                                        f"NVIDIA_DRIVER_CAPABILITIES={value}; present anyway: {', '.join(unasked)} "
                                        "(this toolkit injects more than asked; do not rely on it)")
    if absent:
        raise CheckFailed.of(asked_files_missing(absent, value, target.facts()))


def test_no_driver_files_baked_into_the_image(target, without_gpu):
    """The driver's user-space files must be the host's, injected by the toolkit to match its
    kernel module: an image that carries its own (a distribution's nvidia-smi or libnvidia-ml, a
    driver installed in it) breaks on every host whose driver is another version. One that must
    (Xorg's NVIDIA driver installed in it) says which in run.bundled_driver, and is held to it:
    its files, and on a GPU host the kernel module."""
    baked = target.baked_driver_files(DRIVER_FILES)
    declared = target.variant.run.get("bundled_driver")
    if not baked and declared is None:
        return
    host_driver = parse_driver_version(target.run("cat /proc/driver/nvidia/version 2>/dev/null").stdout)
    if not baked:
        raise CheckFailed(Cause.DRIVER_VERSION_MISMATCH,
                          f"the image declares run.bundled_driver = \"{declared}\" but carries no NVIDIA driver files: its "
                          "driver's installation is missing or broken (or, if it does not carry one, remove the key)")
    if declared is None:
        raise CheckFailed.of(driver_baked_in(baked, host_driver))
    wrong = bundled_driver_wrong(declared, baked, host_driver)
    if wrong:
        raise CheckFailed.of(wrong)
    if host_driver is None:  # its files are the declared version; whether the host's is, only a GPU host says
        without_gpu(CheckFailed(Cause.NO_GPU_ON_HOST, f"the image carries driver {declared} (run.bundled_driver): only "
                                                      "a GPU host's kernel module can be held to it"))
