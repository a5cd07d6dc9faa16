"""Variant manifests: what an image must provide, how to run it, and workload thresholds.

A variant is a folder under images/ with a `manifest.toml` and the image it is about: a
`Dockerfile` beside the manifest (built by rendergate), an `image = "REF"` in it (built elsewhere,
pulled if need be), or `--image REF` on the command line. Only a manifest that says `host = true`
is checked on the machine running the suite itself. Manifests are validated strictly, before any
container starts: a typo in a requirement name would otherwise silently turn a check into a skip.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path


class ManifestError(Exception):
    """A manifest that cannot be used; the message names the file and the key."""


def _bool(v):
    return isinstance(v, bool)


def _str(v):
    return isinstance(v, str) and v != ""


def _str_list(v):
    return isinstance(v, list) and bool(v) and all(_str(x) for x in v)


def _positive_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0


def _positive_int(v):
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _str_table(v):
    return isinstance(v, dict) and all(isinstance(x, str) for x in v.values())


GPU_FEATURES = {"nvenc", "optix"}
# Requirement keys that qualify other requirements instead of naming checks of their own.
QUALIFIERS = {"gpu_must_have"}
# Each known key: (validator, what a valid value looks like).
REQUIREMENTS = {
    "gpu": (_bool, "true or false"),
    "nvenc": (_str_list, 'a list of ffmpeg encoder names, e.g. ["h264_nvenc"]'),
    "manimpango": (_bool, "true or false"),
    "latex": (_bool, "true or false"),
    "cycles_devices": (_str_list, 'a list of Cycles device types, e.g. ["OPTIX", "CUDA"]'),
    "xorg": (_bool, "true or false"),
    "glx_renderer": (_str, 'the GL vendor the renderer must come from, e.g. "nvidia"'),
    "vnc": (_bool, "true or false"),
    "egl": (_bool, "true or false: EGL initialises headless (device or surfaceless platform), any device"),
    "egl_renderer": (_str, 'the vendor EGL must render with, e.g. "nvidia"'),
    "vulkan": (_bool, "true or false: Vulkan lists a physical device, any device"),
    "vulkan_device": (_str, 'the vendor of a Vulkan device there must be, e.g. "nvidia"'),
    "host_ready": (_bool, "true or false: the host's driver, devices, persistence mode, Xid errors, DCGM diagnostic"),
    "gpu_must_have": (lambda v: _str_list(v) and set(v) <= GPU_FEATURES,
                      'GPU features the variant needs on every host, from: "nvenc", "optix" (a GPU without '
                      'them then fails the variant instead of "not supported by this GPU")'),
}
RUN = {
    "gpus": (lambda v: v == "all" or v == "none" or _positive_int(v), '"all", "none" or a GPU count'),
    "driver_capabilities": (_str_list, 'a list such as ["compute", "utility", "video"]'),
    "env": (_str_table, "a table of string values"),
    "shm_size": (_str, 'a size such as "1g"'),
    "command": (_str_list, 'a command that keeps the container alive, e.g. ["sleep", "infinity"]'),
    "cpus": (_positive_number, "how many CPUs the container may use (default: all)"),
    "python": (_str, "the Python interpreter inside the image"),
}
THRESHOLDS = {
    "cycles_gpu_speedup": (_positive_number, "a positive number"),
    "parallel_speedup": (_positive_number, "a positive number"),
    "manim_parts_speedup": (_positive_number, "a positive number"),
    "nvenc_speedup": (_positive_number, "a positive number"),
    "repeats": (_positive_int, "a positive integer"),
    "max_regression": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1,
                       "the fraction a speedup may fall below the last promoted image's, e.g. 0.25"),
}


def _table(schema):
    """A validator for an inline table whose keys all come from `schema`, each one valid."""
    return lambda v: isinstance(v, dict) and bool(v) and all(k in schema and schema[k](x) for k, x in v.items())


def _quality(v):
    return isinstance(v, str) and v in MANIM_QUALITIES


def _size(v):
    return isinstance(v, str) and len(v.split("x")) == 2 and all(p.isdigit() and int(p) > 0 for p in v.split("x"))


# Manim's qualities by the names users know them by: (render flag, width, height, frame rate).
MANIM_QUALITIES = {"480p15": ("-ql", 854, 480, 15), "720p30": ("-qm", 1280, 720, 30), "1080p60": ("-qh", 1920, 1080, 60),
                   "1440p60": ("-qp", 2560, 1440, 60), "2160p60": ("-qk", 3840, 2160, 60)}
WORKLOADS = {
    "manim_scene": (_table({"smoke": _quality, "full": _quality}),
                    f'a table naming the quality per tier, e.g. {{ smoke = "480p15", full = "1080p60" }} '
                    f"(qualities: {', '.join(MANIM_QUALITIES)})"),
    "manim_parts": (_bool, "true: the scene also rendered as parts by parallel jobs and concatenated"),
    "cycles_frame": (_table({"size": _size, "samples": _positive_int}), '{ size = "320x180", samples = 32 }'),
    "parallel_frames": (_table({"frames": _positive_int, "workers": _positive_int, "size": _size,
                                "samples": _positive_int}),
                        '{ frames = 8, workers = 2, size = "256x144", samples = 16 }'),
    "encode": (_table({"size": _size, "frames": _positive_int}), '{ size = "1920x1080", frames = 120 }'),
}


def _image_ref(v):
    return _str(v) and not any(c.isspace() or c == "\0" for c in v)


TOP_LEVEL = {
    "description": (_str, "a string"),
    "image": (_image_ref, 'the image to check, built elsewhere, e.g. "registry.example.com/render/blender:1.2"'),
    "host": (_bool, "true: the variant is the machine running the suite itself, checked in place (no image)"),
}
SECTIONS = {"requirements": REQUIREMENTS, "run": RUN, "thresholds": THRESHOLDS, "workloads": WORKLOADS}
CYCLES_DEVICE_TYPES = {"CUDA", "OPTIX", "HIP", "ONEAPI", "METAL"}
DRIVER_CAPABILITIES = {"compute", "utility", "video", "graphics", "display", "compat32", "all"}
DEFAULT_COMMAND = ["sleep", "infinity"]


@dataclass(frozen=True)
class Variant:
    name: str
    folder: Path
    description: str = ""
    requirements: dict = field(default_factory=dict)
    run: dict = field(default_factory=dict)
    thresholds: dict = field(default_factory=dict)
    workloads: dict = field(default_factory=dict)
    image: str | None = None  # the image to check: the manifest's `image`, or --image
    host: bool = False  # checked on the machine running the suite (`host = true`), not in a container
    gpu_type: str | None = None  # the GPU type of its cell in a --gpu matrix (modal target)

    @property
    def key(self) -> str:
        """The variant as one run knows it: its name, and in a GPU matrix the GPU type too."""
        return f"{self.name}@{self.gpu_type}" if self.gpu_type else self.name

    @property
    def manifest(self) -> Path:
        return self.folder / "manifest.toml"

    @property
    def dockerfile(self) -> Path | None:
        path = self.folder / "Dockerfile"
        return path if path.is_file() else None

    @property
    def needs_image(self) -> bool:
        return not self.host

    @property
    def build_tag(self) -> str:
        """The tag rendergate builds the variant's Dockerfile as (a valid Docker name for any folder name)."""
        return f"rendergate/{re.sub(r'[^a-z0-9._-]+', '-', self.name.lower()).strip('.-_') or 'variant'}:dev"

    @property
    def image_ref(self) -> str | None:
        """The image the variant's checks run in: the one named, else the Dockerfile's build; None on the host."""
        if self.host:
            return None
        return self.image or (self.build_tag if self.dockerfile else None)

    def declared(self, name: str):
        """What the manifest says for a requirement ('latex') or a workload ('workloads.encode');
        None when it says nothing."""
        section, _, key = name.rpartition(".")
        return {"": self.requirements, "workloads": self.workloads}[section].get(key)

    @property
    def driver_capabilities(self) -> list[str]:
        return self.run.get("driver_capabilities", ["compute", "utility"])

    @property
    def command(self) -> list[str]:
        return self.run.get("command", DEFAULT_COMMAND)


def _check_table(path: Path, prefix: str, table: dict, schema: dict) -> None:
    for key, value in table.items():
        name = f"{prefix}{key}"
        if key not in schema:
            known = ", ".join(sorted(schema))
            raise ManifestError(f"{path}: unknown key '{name}' (known: {known})")
        valid, expected = schema[key]
        if not valid(value):
            raise ManifestError(f"{path}: key '{name}' must be {expected}, got {value!r}")


def load_variant(folder: Path) -> Variant:
    path = folder / "manifest.toml"
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ManifestError(f"{path}: missing (every folder under images/ needs a manifest.toml)") from None
    except tomllib.TOMLDecodeError as e:
        raise ManifestError(f"{path}: not valid TOML: {e}") from None
    sections = {k: v for k, v in data.items() if k in SECTIONS}
    _check_table(path, "", {k: v for k, v in data.items() if k not in SECTIONS}, TOP_LEVEL)
    for section, table in sections.items():
        if not isinstance(table, dict):
            raise ManifestError(f"{path}: key '{section}' must be a table ([{section}])")
        _check_table(path, f"{section}.", table, SECTIONS[section])
    requirements = sections.get("requirements", {})
    run = sections.get("run", {})
    for kind in requirements.get("cycles_devices", []):
        if kind not in CYCLES_DEVICE_TYPES:
            raise ManifestError(
                f"{path}: key 'requirements.cycles_devices' has unknown device type {kind!r} "
                f"(known: {', '.join(sorted(CYCLES_DEVICE_TYPES))})")
    dockerfile = folder / "Dockerfile"
    if (dockerfile.exists() or dockerfile.is_symlink()) and not dockerfile.is_file():
        raise ManifestError(f"{dockerfile}: not a file (a folder or a dangling link): the variant's image cannot be built")
    host, image = data.get("host", False), data.get("image")
    if host and (image or dockerfile.is_file()):
        beside = f"image = {image!r}" if image else "a Dockerfile beside it"
        raise ManifestError(f"{path}: key 'host' says the variant is this machine itself, but it has {beside}: "
                            "a host variant has no image (drop one of them)")
    if image and dockerfile.is_file():
        raise ManifestError(f"{path}: key 'image' names {image}, but a Dockerfile is beside it: say which one is "
                            "checked (drop `image` to build the Dockerfile, or move the Dockerfile away)")
    for cap in run.get("driver_capabilities", []):
        if cap not in DRIVER_CAPABILITIES:
            raise ManifestError(
                f"{path}: key 'run.driver_capabilities' has unknown capability {cap!r} "
                f"(known: {', '.join(sorted(DRIVER_CAPABILITIES))})")
    return Variant(
        name=folder.name,
        folder=folder,
        description=data.get("description", ""),
        image=image,
        host=host,
        requirements=requirements,
        run=run,
        thresholds=sections.get("thresholds", {}),
        workloads=sections.get("workloads", {}),
    )


def load_variants(images_dir: Path) -> dict[str, Variant]:
    """Every variant under images_dir, by name; raises ManifestError on the first bad one."""
    if not images_dir.is_dir():
        raise ManifestError(f"{images_dir}: no such images folder")
    folders = sorted(p for p in images_dir.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    return {folder.name: load_variant(folder) for folder in folders}
