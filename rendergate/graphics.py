"""Which device a graphics API (GLX, EGL, Vulkan) renders with, and why it is not the vendor a
variant requires. The classic fault is silent: the API falls back to Mesa's software rasteriser
(llvmpipe) and only the device's name tells."""
from __future__ import annotations

from .diagnosis import Cause, CheckFailed, Diagnosis
from .parsers import GraphicsDevice

# The NVIDIA driver file each API renders through; the container toolkit injects it with `graphics`.
NVIDIA_FILES = {"GLX": "libGLX_nvidia.so.0", "EGL": "libEGL_nvidia.so.0", "Vulkan": "nvidia_icd.json"}


def vendor_failure(devices: list[GraphicsDevice], api: str, vendor: str) -> Diagnosis | None:
    """Why none of `devices` renders in hardware from `vendor`, or None when one does."""
    if any(vendor.lower() in d.vendor.lower() and not d.software for d in devices):
        return None
    found = "; ".join(d.name for d in devices) or "no device"
    if any(d.software for d in devices):
        caps = "graphics,display and Xorg on the nvidia driver" if api == "GLX" else "graphics"
        return Diagnosis(Cause.SOFTWARE_RENDERER,
                         f"{api} renders in software ({found}): NVIDIA's {api} driver ({NVIDIA_FILES[api]}) is not used "
                         f"(the container needs NVIDIA_DRIVER_CAPABILITIES={caps})")
    return Diagnosis(Cause.SOFTWARE_RENDERER, f"{api} offers no {vendor} device (found: {found})")


def require_vendor(target, devices: list[GraphicsDevice], api: str, vendor: str) -> None:
    """Raise why `api` does not render on `vendor` in the target. Where a GPU is visible and
    NVIDIA's file for the API is missing, that is the cause: the image, the host's toolkit or the
    platform (gVisor) withheld it."""
    failure = vendor_failure(devices, api, vendor)
    if failure is None:
        return
    if target.facts().nvidia_devices_visible:
        failure = target.missing_driver_file(NVIDIA_FILES[api]) or failure
    raise CheckFailed.of(failure)
