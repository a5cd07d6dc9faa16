"""NVIDIA_DRIVER_CAPABILITIES, for containers: the toolkit injects the driver's files by
capability, so a container that does not ask for `video` has no libnvidia-encode, whatever the
image holds. Checked both ways: what the requirements need against what the container asks for
(decided without a GPU), and, on a GPU host, what it asks for against the files it got. And the
image must not carry the driver's files itself (decided without a GPU)."""
import pytest

from rendergate.capabilities import mismatches, uncovered
from rendergate.diagnosis import DRIVER_FILES, Cause, CheckFailed, asked_files_missing, driver_baked_in

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


def test_no_driver_files_baked_into_the_image(target):
    """The driver's user-space files must be the host's, injected by the toolkit to match its
    kernel module: an image that carries its own (a distribution's nvidia-smi or libnvidia-ml, a
    driver installed in it) breaks on every host whose driver is another version."""
    baked = target.baked_driver_files(DRIVER_FILES)
    if baked:
        version = target.run("sed -n 's/.*Kernel Module[^0-9]*\\([0-9][0-9.]*\\).*/\\1/p' /proc/driver/nvidia/version 2>/dev/null")
        raise CheckFailed.of(driver_baked_in(baked, version.stdout.strip() or None))
