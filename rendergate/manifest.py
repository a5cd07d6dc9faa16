"""Variant manifests: what an image must provide, how to run it, and workload thresholds.

A variant is a folder under images/ with a `manifest.toml` and the image it is about: a
`Dockerfile` beside the manifest (built by rendergate), an `image = "REF"` in it (built elsewhere,
pulled if need be), or `--image REF` on the command line. Only a manifest that says `host = true`
is checked on the machine running the suite itself. Manifests are validated strictly, before any
container starts: a typo in a requirement name would otherwise silently turn a check into a skip.
"""
from __future__ import annotations

import math
import re
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path


class ManifestError(Exception):
    """A manifest that cannot be used; the message names the file and the key."""


# Bounds that keep every value usable by the suites, and every manifest quick to check.
MAX_MANIFEST_BYTES = 64 * 1024
MAX_ITEMS = 64  # items of a list (encoders, device types, command words)
MAX_TEXT = 1024  # characters of a string (a command word, an env value, a path)
VARIANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# A Docker image reference: [registry[:port]/]path[:tag][@sha256:digest], lower-case path.
IMAGE_REF = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]{1,5})?(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*"
                       r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?")


def _bool(v):
    return isinstance(v, bool)


def _text(v, limit=MAX_TEXT):
    """A non-empty one-line string: no control characters (NUL, newline, escape ...)."""
    return isinstance(v, str) and 0 < len(v) <= limit and not _CONTROL.search(v)


def _word(v):
    """A name such as an ffmpeg encoder or a vendor: letters, digits and _ . -."""
    return isinstance(v, str) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", v) is not None


def _list_of(item):
    return lambda v: (isinstance(v, list) and 0 < len(v) <= MAX_ITEMS and all(item(x) for x in v)
                      and len(set(v)) == len(v))


def _one_of(choices):
    return lambda v: isinstance(v, str) and v in choices


def _number(low, high, low_open=True):
    """A finite number in (low, high] (or [low, high] when not low_open)."""
    return lambda v: (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                      and (v > low if low_open else v >= low) and v <= high)


def positive(kind):
    """A type for command-line options: a finite number above 0 of `kind` (argparse names the option
    in its error)."""
    def parse(text: str):
        value = kind(text)
        if not (math.isfinite(value) and value > 0):
            raise ValueError(text)
        return value
    parse.__name__ = f"positive {kind.__name__}"
    return parse


def _int(low, high):
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


def _env(v):
    return (isinstance(v, dict) and len(v) <= MAX_ITEMS
            and all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", k) for k in v)
            and all(isinstance(x, str) and len(x) <= MAX_TEXT and not _CONTROL.search(x) for x in v.values()))


def _path_word(v):
    return _text(v) and not any(c.isspace() for c in v)


GPU_FEATURES = {"nvenc", "optix"}
CYCLES_DEVICE_TYPES = {"CUDA", "OPTIX", "HIP", "ONEAPI", "METAL"}
DRIVER_CAPABILITIES = {"compute", "utility", "video", "graphics", "display", "compat32", "all"}
# Requirement keys that qualify other requirements instead of naming checks of their own.
QUALIFIERS = {"gpu_must_have"}
# Each known key: (validator, what a valid value looks like).
REQUIREMENTS = {
    "gpu": (_bool, "true or false"),
    "nvenc": (_list_of(_word), 'a list of ffmpeg encoder names, e.g. ["h264_nvenc"]'),
    "manimpango": (_bool, "true or false"),
    "latex": (_bool, "true or false"),
    "cycles_devices": (_list_of(_one_of(CYCLES_DEVICE_TYPES)),
                       f'a list of Cycles device types, e.g. ["OPTIX", "CUDA"] (known: {", ".join(sorted(CYCLES_DEVICE_TYPES))})'),
    "xorg": (_bool, "true or false"),
    "glx_renderer": (_word, 'the GL vendor the renderer must come from, e.g. "nvidia"'),
    "vnc": (_bool, "true or false"),
    "egl": (_bool, "true or false: EGL initialises headless (device or surfaceless platform), any device"),
    "egl_renderer": (_word, 'the vendor EGL must render with, e.g. "nvidia"'),
    "vulkan": (_bool, "true or false: Vulkan lists a physical device, any device"),
    "vulkan_device": (_word, 'the vendor of a Vulkan device there must be, e.g. "nvidia"'),
    "host_ready": (_bool, "true or false: the host's driver, devices, persistence mode, Xid errors, DCGM diagnostic"),
    "gpu_must_have": (_list_of(_one_of(GPU_FEATURES)),
                      'GPU features the variant needs on every host, from: "nvenc", "optix" (a GPU without '
                      'them then fails the variant instead of "not supported by this GPU")'),
}
RUN = {
    "gpus": (lambda v: _one_of(("all", "none"))(v) or _int(1, 64)(v), '"all", "none" or a GPU count (1 to 64)'),
    "driver_capabilities": (_list_of(_one_of(DRIVER_CAPABILITIES)),
                            f'a list such as ["compute", "utility", "video"] (known: {", ".join(sorted(DRIVER_CAPABILITIES))})'),
    "env": (_env, "a table of NAME = \"value\" (names of letters, digits and _; values of one line)"),
    "shm_size": (lambda v: isinstance(v, str) and re.fullmatch(r"[1-9][0-9]{0,11}[bkmgBKMG]?", v) is not None,
                 'a size such as "1g" (a number, then b, k, m or g)'),
    "command": (_list_of(_text), 'a command that keeps the container alive, e.g. ["sleep", "infinity"]'),
    "cpus": (_number(0.01, 1024, low_open=False), "how many CPUs the container may use, 0.01 to 1024 (default: all)"),
    "python": (_path_word, "the Python interpreter inside the image, e.g. \"/opt/venv/bin/python\""),
    "bundled_driver": (lambda v: isinstance(v, str) and re.fullmatch(r"[0-9]{3}\.[0-9]{2,3}(\.[0-9]{2,3})?", v) is not None,
                       'the NVIDIA driver version the image carries itself, e.g. "535.161.08" (only for an image that '
                       "must: Xorg's NVIDIA driver installed in it); its files and a GPU host's kernel module are held to it"),
}
_SPEEDUP = (_number(0, 1000), "a speedup, a number above 0 and at most 1000")
THRESHOLDS = {
    "cycles_gpu_speedup": _SPEEDUP,
    "parallel_speedup": _SPEEDUP,
    "manim_parts_speedup": _SPEEDUP,
    "nvenc_speedup": _SPEEDUP,
    "repeats": (_int(1, 100), "a whole number of repeats, 1 to 100"),
    "max_regression": (_number(0, 0.999, low_open=False),
                       "the fraction a speedup may fall below the last promoted image's, e.g. 0.25"),
}


def _table(schema, optional=None):
    """A validator for an inline table with every key of `schema` (and perhaps some of
    `optional`), each one valid."""
    known = {**schema, **(optional or {})}
    return lambda v: (isinstance(v, dict) and set(schema) <= set(v) <= set(known)
                      and all(known[k](x) for k, x in v.items()))


def _quality(v):
    return isinstance(v, str) and v in MANIM_QUALITIES


def _size(v):
    """WIDTHxHEIGHT in ASCII digits, even (H.264 in yuv420p needs it), 16x16 to 7680x4320."""
    match = isinstance(v, str) and re.fullmatch(r"([0-9]{2,4})x([0-9]{2,4})", v)
    width, height = (int(n) for n in match.groups()) if match else (0, 0)
    return 16 <= width <= 7680 and 16 <= height <= 4320 and width % 2 == height % 2 == 0


# Where a render farm's frames are stitched into a video: by the image's own ffmpeg, or outside
# the render image (rendergate stitches them on its side, as a separate ffmpeg stage would).
COMBINE = ("image", "rendergate")
# Manim's qualities by the names users know them by: (render flag, width, height, frame rate).
MANIM_QUALITIES = {"480p15": ("-ql", 854, 480, 15), "720p30": ("-qm", 1280, 720, 30), "1080p60": ("-qh", 1920, 1080, 60),
                   "1440p60": ("-qp", 2560, 1440, 60), "2160p60": ("-qk", 3840, 2160, 60)}
_SIZE = '"WIDTHxHEIGHT", even, 16x16 to 7680x4320'
WORKLOADS = {
    "manim_scene": (_table({"smoke": _quality, "full": _quality}),
                    f'a table naming the quality of both tiers, e.g. {{ smoke = "480p15", full = "1080p60" }} '
                    f"(qualities: {', '.join(MANIM_QUALITIES)})"),
    "manim_parts": (_bool, "true: the scene also rendered as parts by parallel jobs and concatenated"),
    "cycles_frame": (_table({"size": _size, "samples": _int(1, 4096)}),
                     f'{{ size = "320x180", samples = 32 }} (size {_SIZE}; samples 1 to 4096)'),
    "parallel_frames": (_table({"frames": _int(1, 10000), "workers": _int(1, 256), "size": _size,
                                "samples": _int(1, 4096)}, {"combine": _one_of(COMBINE)}),
                        f'{{ frames = 12, workers = 2, size = "448x252", samples = 4 }} (frames 1 to 10000, workers '
                        f"1 to 256, size {_SIZE}, samples 1 to 4096; and combine = \"image\" (the default: the "
                        "image's ffmpeg stitches the frames) or \"rendergate\" (they are stitched outside the image))"),
    "encode": (_table({"size": _size, "frames": _int(1, 10000)}),
               f'{{ size = "1920x1080", frames = 120 }} (size {_SIZE}, frames 1 to 10000)'),
}
# What else a manifest must say when it says these keys: what the suites then read.
NEEDS = [
    (("workloads.manim_parts",), "workloads.manim_scene"),
    (("workloads.manim_parts",), "thresholds.manim_parts_speedup"),
    (("workloads.parallel_frames",), "thresholds.parallel_speedup"),
    (("workloads.cycles_frame",), "requirements.cycles_devices"),
    (("workloads.cycles_frame",), "thresholds.cycles_gpu_speedup"),
    (("workloads.encode", "requirements.nvenc"), "thresholds.nvenc_speedup"),
]
TOP_LEVEL = {
    "description": (lambda v: isinstance(v, str) and len(v) <= 2000 and "\0" not in v, "a string (at most 2000 characters)"),
    "image": (lambda v: isinstance(v, str) and len(v) <= 512 and IMAGE_REF.fullmatch(v) is not None,
              'the image to check, built elsewhere, e.g. "registry.example.com/render/blender:1.2"'),
    "host": (_bool, "true: the variant is the machine running the suite itself, checked in place (no image)"),
}
SECTIONS = {"requirements": REQUIREMENTS, "run": RUN, "thresholds": THRESHOLDS, "workloads": WORKLOADS}
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

    def built_here(self, ref: str) -> bool:
        """Whether `ref` is what rendergate builds from the variant's Dockerfile (else it is pulled)."""
        return ref == self.build_tag and self.dockerfile is not None

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
            shown = f"'{name}'" if _text(name, 80) else _shown(name)  # a key of control characters, say
            raise ManifestError(f"{path}: unknown key {shown} (known: {known})")
        valid, expected = schema[key]
        if not valid(value):
            shown = "(not shown: it may be a secret)" if name == "run.env" else _shown(value)
            raise ManifestError(f"{path}: key '{name}' must be {expected}, got {shown}")


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _read(path: Path) -> dict:
    """The manifest's TOML, or ManifestError: it must be a regular UTF-8 file of a sane size."""
    try:
        info = path.stat()
        mode, size = info.st_mode, info.st_size
    except FileNotFoundError:
        raise ManifestError(f"{path}: missing (every folder under images/ needs a manifest.toml)") from None
    except OSError as e:  # a symlink loop, no permission
        raise ManifestError(f"{path}: cannot be read ({e.strerror})") from None
    if not stat.S_ISREG(mode):
        raise ManifestError(f"{path}: not a regular file (a folder, a pipe or a device)")
    if size > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{path}: {size} bytes, more than a manifest may have ({MAX_MANIFEST_BYTES})")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ManifestError(f"{path}: not UTF-8 text (byte {raw[e.start]:#04x} at offset {e.start}): "
                            "save it as UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ManifestError(f"{path}: not valid TOML: {e}") from None
    except RecursionError:
        raise ManifestError(f"{path}: nested too deeply to be a manifest") from None


def _check_dockerfile(dockerfile: Path) -> None:
    """A Dockerfile beside a manifest must be one that can be built: a UTF-8 text file with a FROM."""
    if not (dockerfile.exists() or dockerfile.is_symlink()):
        return
    if not dockerfile.is_file():
        raise ManifestError(f"{dockerfile}: not a file (a folder or a dangling link): the variant's image cannot be built")
    try:
        text = dockerfile.read_bytes()[:1024 * 1024].decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(f"{dockerfile}: cannot be read as UTF-8 text ({type(e).__name__})") from None
    if not re.search(r"^\s*FROM\s", text, re.M | re.I):
        raise ManifestError(f"{dockerfile}: no FROM instruction: the variant's image cannot be built")


def load_variant(folder: Path) -> Variant:
    path = folder / "manifest.toml"
    if not VARIANT_NAME.fullmatch(folder.name):
        raise ManifestError(f"{folder}: a variant's folder name is 1 to 64 letters, digits, '.', '_' and '-', "
                            "starting with a letter or digit")
    data = _read(path)
    sections = {k: v for k, v in data.items() if k in SECTIONS}
    _check_table(path, "", {k: v for k, v in data.items() if k not in SECTIONS}, TOP_LEVEL)
    for section, table in sections.items():
        if not isinstance(table, dict):
            raise ManifestError(f"{path}: key '{section}' must be a table ([{section}])")
        _check_table(path, f"{section}.", table, SECTIONS[section])
    requirements = sections.get("requirements", {})
    run = sections.get("run", {})
    said = {f"{section}.{key}" for section, table in sections.items() for key in table}
    for when, needed in NEEDS:
        if set(when) <= said and needed not in said:
            raise ManifestError(f"{path}: key '{needed}' is missing: {' with '.join(when)} needs it")
    dockerfile = folder / "Dockerfile"
    _check_dockerfile(dockerfile)
    host, image = data.get("host", False), data.get("image")
    if host and (image or dockerfile.is_file()):
        beside = f"image = {image!r}" if image else "a Dockerfile beside it"
        raise ManifestError(f"{path}: key 'host' says the variant is this machine itself, but it has {beside}: "
                            "a host variant has no image (drop one of them)")
    if image and dockerfile.is_file():
        raise ManifestError(f"{path}: key 'image' names {image}, but a Dockerfile is beside it: say which one is "
                            "checked (drop `image` to build the Dockerfile, or move the Dockerfile away)")
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
    folders = sorted(p for p in images_dir.iterdir() if p.is_dir() and not p.name.startswith((".", "_", "__pycache__")))
    return {folder.name: load_variant(folder) for folder in folders}
