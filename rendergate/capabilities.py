"""NVIDIA_DRIVER_CAPABILITIES against what a variant needs and what the container holds.

The NVIDIA container toolkit injects the driver's libraries by capability: `video` brings
libnvidia-encode, `graphics` libnvoptix and GLX, `display` Xorg's driver. A container that does
not ask for what its requirements need lacks those files; one that holds files it did not ask
for relies on a toolkit that injects more than asked (newer ones do), which the next host's
toolkit may not.
"""
from __future__ import annotations

from .diagnosis import DRIVER_FILES
from .manifest import DRIVER_CAPABILITIES, Variant

# Which capabilities each requirement needs (per item for list-valued ones).
_NEEDS = {
    "gpu": {"utility", "compute"},
    "nvenc": {"video"},
    "glx_renderer": {"graphics", "display"},
    "egl_renderer": {"graphics"},  # headless: `display` only to present on an X server
    "vulkan_device": {"graphics"},
}
_CYCLES_NEEDS = {"CUDA": {"compute"}, "OPTIX": {"compute", "graphics"}, "HIP": set(), "ONEAPI": set(), "METAL": set()}


def asked(env_value: str) -> set[str]:
    """The capabilities an NVIDIA_DRIVER_CAPABILITIES value asks for ("all": every one)."""
    names = {c.strip() for c in env_value.split(",") if c.strip()}
    return set(DRIVER_CAPABILITIES) if "all" in names else names


def needed(variant: Variant) -> dict[str, set[str]]:
    """Capability -> the requirements (and items) that need it."""
    found: dict[str, set[str]] = {}
    for name, value in variant.requirements.items():
        if value in (None, False):
            continue
        if name == "cycles_devices":
            for kind in value:
                for capability in _CYCLES_NEEDS[kind]:
                    found.setdefault(capability, set()).add(f"cycles_devices {kind}")
        for capability in _NEEDS.get(name, ()):
            found.setdefault(capability, set()).add(name)
    return found


def files_of(capability: str) -> list[str]:
    return [name for name, cap in DRIVER_FILES.items() if cap == capability]


def uncovered(variant: Variant, env_value: str) -> list[str]:
    """One line per capability the variant's requirements need that the container does not ask for."""
    have = asked(env_value)
    return [f"{' and '.join(sorted(needers))} need{'s' if len(needers) == 1 else ''} {capability} "
            f"({', '.join(files_of(capability))})"
            for capability, needers in sorted(needed(variant).items()) if capability not in have]


def mismatches(env_value: str, present: set[str]) -> tuple[list[str], list[str]]:
    """(files asked for but absent, files present but not asked for), each as "file (capability)"."""
    have = asked(env_value)
    absent = [f"{f} ({c})" for f, c in DRIVER_FILES.items() if c in have and f not in present]
    unasked = [f"{f} ({c})" for f, c in DRIVER_FILES.items() if c not in have and f in present]
    return absent, unasked
