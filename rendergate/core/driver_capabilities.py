"""NVIDIA_DRIVER_CAPABILITIES against what a variant needs and what the container holds.

The NVIDIA container toolkit injects the driver's files by capability: `video` brings
libnvidia-encode, `graphics` libnvoptix and GLX, `display` Xorg's driver. A container that does
not ask for what its requirements need (each requirement declares it: rendergate.core.requirements)
lacks those files; one that holds files it did not ask for relies on a toolkit that injects
more than asked (newer ones do), which the next host's toolkit may not.
"""
from __future__ import annotations

import re

from rendergate.core import requirements

DRIVER_CAPABILITIES = {"compute", "utility", "video", "graphics", "display", "compat32", "all"}
# The driver's files: the capability that makes the toolkit inject each one, and what renders,
# encodes or runs through it (an API, a Cycles backend), where a check needs to name it.
_FILES = (
    ("nvidia-smi", "utility", ""),
    ("libnvidia-ml.so.1", "utility", "NVML"),
    ("libcuda.so.1", "compute", "CUDA"),
    ("libnvidia-encode.so.1", "video", "NVENC"),
    ("libnvcuvid.so.1", "video", "NVDEC"),
    ("libGLX_nvidia.so.0", "graphics", "GLX"),
    ("libEGL_nvidia.so.0", "graphics", "EGL"),
    ("libnvoptix.so.1", "graphics", "OPTIX"),
    ("nvidia_icd.json", "graphics", "Vulkan"),  # the Vulkan ICD
    ("nvidia_drv.so", "display", "Xorg"),
    ("libglxserver_nvidia.so", "display", "AIGLX"),
)
DRIVER_FILES = {name: capability for name, capability, _ in _FILES}
_SERVING = {serves: name for name, _, serves in _FILES if serves}
# The stems of every library of the driver, those the table names and the rest the toolkit injects
# with them (libnvidia-glcore, libnvidia-tls, ...): libnvidia-*, and the table's own up to ".so"
# (libcuda., never libcudart: the CUDA runtime is the image's own).
_DRIVER_STEMS = re.compile("|".join(sorted({"libnvidia-", *(re.escape(name.split(".so")[0] + ".") for name in DRIVER_FILES
                                                            if name.startswith("lib"))})))


def driver_library(*capabilities: str) -> str:
    """A pattern of the driver's libraries the table names, as a loader or a tool names them
    (libcuda.so.1): those of `capabilities`, or every one."""
    return "|".join(re.escape(name) for name, capability in DRIVER_FILES.items()
                    if name.startswith("lib") and ".so." in name and capability in (capabilities or DRIVER_CAPABILITIES))


def is_driver_file(name: str) -> bool:
    """A file of NVIDIA's driver (the host's, injected by the toolkit), never a package of the image's."""
    return name in DRIVER_FILES or _DRIVER_STEMS.match(name) is not None


def file_serving(what: str) -> str | None:
    """The driver file an API or a backend ("GLX", "OPTIX") goes through; None when it has none."""
    return _SERVING.get(what)


def asked(env_value: str) -> set[str]:
    """The capabilities an NVIDIA_DRIVER_CAPABILITIES value asks for ("all": every one)."""
    names = {c.strip() for c in env_value.split(",") if c.strip()}
    return set(DRIVER_CAPABILITIES) if "all" in names else names


def needed(variant) -> dict[str, set[str]]:
    """Capability -> the requirements (and items) of the variant that need it."""
    found: dict[str, set[str]] = {}
    registry = requirements.registered()
    for key in variant.declared_keys():
        requirement = registry.get(key)
        for capability, needers in (requirement.needed_capabilities(variant.declared(key)) if requirement else {}).items():
            found.setdefault(capability, set()).update(needers)
    return found


def files_of(capability: str) -> list[str]:
    return [name for name, cap in DRIVER_FILES.items() if cap == capability]


def uncovered(variant, env_value: str) -> list[str]:
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
