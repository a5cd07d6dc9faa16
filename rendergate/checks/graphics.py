"""Which device a graphics API (GLX, EGL, Vulkan) renders with, and why it is not the vendor a
variant requires. The classic fault is silent: the API falls back to Mesa's software rasteriser
(llvmpipe) and only the device's name tells."""
from __future__ import annotations

from rendergate.core.diagnosis import Cause, CheckFailed, Diagnosis
from rendergate.core.driver_capabilities import file_serving
from rendergate.core.parsers import GraphicsDevice

# The loaders say why a driver did not load only when asked to (Mesa's EGL and GL loaders, the
# Vulkan loader); glvnd says nothing when a vendor library does not load, so those are checked apart.
LOADER_DEBUG = {"GLX": "LIBGL_DEBUG=verbose", "EGL": "EGL_LOG_LEVEL=debug", "Vulkan": "VK_LOADER_DEBUG=error,warn,driver"}
# What library_problems() is asked about, in the folders of the dynamic loader's own architecture
# ($arch): another architecture's copies (i386, for Wine or Steam) are not this loader's to load.
# Vulkan's own loader library too: vulkaninfo only says it "failed to load".
VULKAN_LOADER = "/usr/lib/$arch/libvulkan.so.1"
VENDOR_LIBRARIES = {api: " ".join(f"{folder}/lib{api}_*.so.0" for folder in ("/usr/lib/$arch", "/usr/lib64", "/usr/lib"))
                    for api in ("GLX", "EGL")}
# The dynamic loader lists what each library needs without running it, and says what is missing
# ("libz.so.1 => not found") or damaged ("file too short"); only those lines are kept, and a named
# library (not a glob) that is not there at all. An image without glibc's loader (musl) says nothing.
_LIBRARY_PROBLEMS = ('ld=; for candidate in /lib64/ld-linux-x86-64.so.2:x86_64-linux-gnu /lib/ld-linux-aarch64.so.1:aarch64-linux-gnu; '
                     'do [ -x "${{candidate%%:*}}" ] && ld=${{candidate%%:*}} && arch=${{candidate#*:}} && break; done; '
                     '[ -n "$ld" ] || exit 0; '
                     'for f in {files}; do if [ -e "$f" ]; then readlink -f "$f"; else case $f in *"*"*) ;; '
                     '*) echo "$f: cannot open shared object file: No such file or directory" >&2;; esac; fi; done | sort -u | while read -r f; do '
                     '"$ld" --list "$f" 2>&1 | grep -E "not found|error while loading|too short|not a dynamic" | sed "s|^|$f: |"; '
                     'done; true')


def library_problems(target, files: str) -> str:
    """What the dynamic loader finds wrong with these libraries (shell globs) in the target."""
    return target.run(_LIBRARY_PROBLEMS.format(files=files)).output


def vendor_failure(devices: list[GraphicsDevice], api: str, vendor: str) -> Diagnosis | None:
    """Why none of `devices` renders in hardware from `vendor`, or None when one does."""
    if any(vendor.lower() in d.vendor.lower() and not d.software for d in devices):
        return None
    found = "; ".join(d.name for d in devices) or "no device"
    if any(d.software for d in devices):
        caps = "graphics,display and Xorg on the nvidia driver" if api == "GLX" else "graphics"
        return Diagnosis(Cause.SOFTWARE_RENDERER,
                         f"{api} renders in software ({found}): NVIDIA's {api} driver ({file_serving(api)}) is not used "
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
        failure = target.missing_driver_file(file_serving(api)) or failure
    raise CheckFailed.of(failure)
