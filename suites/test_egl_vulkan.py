"""EGL and Vulkan, headless, as render apps and engines use them without an X server. Like GLX
they fall back to Mesa's software rasteriser in silence, so the vendor is checked by device."""
import pytest

from rendergate.checks.graphics import LOADER_DEBUG, VENDOR_LIBRARIES, VULKAN_LOADER, library_problems, require_vendor
from rendergate.core.diagnosis import CheckFailed
from rendergate.core.grammars import diagnose
from rendergate.core.parsers import parse_eglinfo, parse_vulkaninfo_summary
from rendergate.core.requirements import declare
from rendergate.core.schema import boolean, word
from rendergate.plugin import requires

EGL = declare("egl", boolean, "true or false: EGL initialises headless (device or surfaceless platform), any device",
              "EGL initialises headless (device or surfaceless platform), any device")
EGL_RENDERER = declare("egl_renderer", word, 'the vendor EGL must render with, e.g. "nvidia"',
                       "EGL renders in hardware from that vendor, not Mesa's software rasteriser",
                       capabilities={"graphics"}, example='"nvidia"')  # headless: `display` only to present on X
VULKAN = declare("vulkan", boolean, "true or false: Vulkan lists a physical device, any device",
                 "Vulkan lists a physical device, any device")
VULKAN_DEVICE = declare("vulkan_device", word, 'the vendor of a Vulkan device there must be, e.g. "nvidia"',
                        "Vulkan lists a hardware device of that vendor", capabilities={"graphics"}, example='"nvidia"')


def egl_devices(target):
    result, _ = target.run_after(f"{LOADER_DEBUG['EGL']} eglinfo", tools=("eglinfo",))
    devices = parse_eglinfo(result.stdout)
    if not devices:  # eglinfo exits 0 when some platforms fail: a headless display must initialise
        evidence = f"{result.output}\n{library_problems(target, VENDOR_LIBRARIES['EGL'])}"  # glvnd's silence
        raise CheckFailed.of(diagnose(evidence, result.rc, "eglinfo (no headless EGL display)", target.facts()))
    return devices


def vulkan_devices(target):
    result, _ = target.run_after(f"{LOADER_DEBUG['Vulkan']} vulkaninfo --summary", tools=("vulkaninfo",))
    devices = parse_vulkaninfo_summary(result.stdout)
    if result.rc != 0 or not devices:  # the loader itself may not load: the dynamic loader says why
        evidence = f"{result.output}\n{library_problems(target, VULKAN_LOADER)}"
        raise CheckFailed.of(diagnose(evidence, result.rc or 1, "vulkaninfo --summary (no physical device)", target.facts()))
    return devices


@requires(EGL)
def test_egl_initialises_headless(target):
    """A headless EGL display initialises (the device or surfaceless platform): what a renderer
    without an X server asks first."""
    egl_devices(target)


@requires(EGL_RENDERER)
@pytest.mark.needs_gpu
def test_egl_renderer(target, requirement):
    """Some EGL device is the vendor's: never only Mesa's llvmpipe, which answers just as well."""
    require_vendor(target, egl_devices(target), "EGL", requirement)


@requires(VULKAN)
def test_vulkan_lists_a_device(target):
    vulkan_devices(target)


@requires(VULKAN_DEVICE)
@pytest.mark.needs_gpu
def test_vulkan_device(target, requirement):
    """Vulkan lists a physical device of the vendor (a CPU device such as lavapipe is not one)."""
    require_vendor(target, vulkan_devices(target), "Vulkan", requirement)
