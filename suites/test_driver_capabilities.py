"""NVIDIA_DRIVER_CAPABILITIES, for containers: the toolkit injects the driver's files by
capability, so a container that does not ask for `video` has no libnvidia-encode, whatever the
image holds. Checked both ways: what the requirements need against what the container asks for
(decided without a GPU), and, on a GPU host, what it asks for against the files it got."""
import pytest

from rendergate.capabilities import mismatches, uncovered
from rendergate.diagnosis import DRIVER_FILES, Cause, CheckFailed, asked_files_missing

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
