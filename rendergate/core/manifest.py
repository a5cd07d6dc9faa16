"""Variant manifests: what an image must provide, how to run it, and workload thresholds.

A variant is a folder under images/ with a `manifest.toml` and the image it is about: a
`Dockerfile` beside the manifest (built by rendergate), an `image = "REF"` in it (built elsewhere,
pulled if need be), or `--image REF` on the command line. Only a manifest that says `host = true`
is checked on the machine running the suite itself. Manifests are validated strictly, before any
container starts: a typo in a requirement name would otherwise silently turn a check into a skip.
The requirement and workload keys, and the thresholds workloads are gated by, are those the
requirement registry holds (rendergate.core.requirements); the run settings are this module's.
"""
from __future__ import annotations

import math
import re
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from rendergate.core import requirements, schema
from rendergate.core.driver_capabilities import DRIVER_CAPABILITIES


class ManifestError(Exception):
    """A manifest that cannot be used; the message names the file and the key."""


# Bounds that keep every value usable by the suites, and every manifest quick to check.
MAX_MANIFEST_BYTES = 64 * 1024
VARIANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# A Docker image reference: [registry[:port]/]path[:tag][@sha256:digest], lower-case path.
IMAGE_REF = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]{1,5})?(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*"
                       r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?")


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


RUN = {
    "gpus": (lambda v: schema.one_of(("all", "none"))(v) or schema.integer(1, 64)(v), '"all", "none" or a GPU count (1 to 64)'),
    "driver_capabilities": (schema.list_of(schema.one_of(DRIVER_CAPABILITIES)),
                            f'a list such as ["compute", "utility", "video"] (known: {", ".join(sorted(DRIVER_CAPABILITIES))})'),
    "env": (schema.env, "a table of NAME = \"value\" (names of letters, digits and _; values of one line)"),
    "shm_size": (lambda v: isinstance(v, str) and re.fullmatch(r"[1-9][0-9]{0,11}[bkmgBKMG]?", v) is not None,
                 'a size such as "1g" (a number, then b, k, m or g)'),
    "command": (schema.list_of(schema.text), 'a command that keeps the container alive, e.g. ["sleep", "infinity"]'),
    "cpus": (schema.number(0.01, 1024, low_open=False), "how many CPUs the container may use, 0.01 to 1024 (default: all)"),
    "python": (schema.path_word, "the Python interpreter inside the image, e.g. \"/opt/venv/bin/python\""),
    "bundled_driver": (lambda v: isinstance(v, str) and re.fullmatch(r"[0-9]{3}\.[0-9]{2,3}(\.[0-9]{2,3})?", v) is not None,
                       'the NVIDIA driver version the image carries itself, e.g. "535.161.08" (only for an image that '
                       "must: Xorg's NVIDIA driver installed in it); its files and a GPU host's kernel module are held to it"),
}
# Thresholds of no one requirement; each workload declares the speedups it is gated by.
RUN_THRESHOLDS = {
    "repeats": (schema.integer(1, 100), "a whole number of repeats, 1 to 100"),
    "max_regression": (schema.number(0, 0.999, low_open=False),
                       "the fraction a speedup may fall below the last promoted image's, e.g. 0.25"),
}
TOP_LEVEL = {
    "description": (lambda v: isinstance(v, str) and len(v) <= 2000 and "\0" not in v, "a string (at most 2000 characters)"),
    "image": (lambda v: isinstance(v, str) and len(v) <= 512 and IMAGE_REF.fullmatch(v) is not None,
              'the image to check, built elsewhere, e.g. "registry.example.com/render/blender:1.2"'),
    "host": (schema.boolean, "true: the variant is the machine running the suite itself, checked in place (no image)"),
}
DEFAULT_COMMAND = ("sleep", "infinity")
DEFAULT_CAPABILITIES = ("compute", "utility")


def sections() -> dict[str, dict]:
    """Each table of a manifest: key -> (validator, what a valid value looks like). The
    requirements and workloads are the registry's (rendergate.core.requirements), as declared now."""
    registry = requirements.registered().values()
    thresholds = {**{name: schema.SPEEDUP for r in registry for name in r.thresholds}, **RUN_THRESHOLDS}
    return {**{section: {r.name: (r.valid, r.expected) for r in registry if r.section == section}
               for section in requirements.SECTIONS},
            "run": RUN, "thresholds": thresholds}


@dataclass(frozen=True)
class RunSettings:
    """How a variant's container (or sandbox) is started: its `[run]` table with the defaults,
    read by every target alike."""
    env: dict[str, str]  # the manifest's, with NVIDIA_DRIVER_CAPABILITIES set from driver_capabilities
    driver_capabilities: tuple[str, ...]
    gpus: str | int  # "all", "none" or a count
    command: tuple[str, ...]  # what keeps it alive (the image's entrypoint is replaced by it)
    python: str  # the image's interpreter the probes run with
    cpus: float | None = None
    shm_size: str | None = None

    @property
    def wants_gpus(self) -> bool:
        return self.gpus != "none"


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

    def declares(self, name: str) -> bool:
        """Whether the manifest asks for the requirement: says it, and not `false`."""
        return self.declared(name) not in (None, False)

    def declared_keys(self) -> list[str]:
        """The requirement keys the manifest declares (not false), in its order: requirements
        ('latex'), then workloads ('workloads.encode')."""
        keys = list(self.requirements) + [f"workloads.{k}" for k in self.workloads]
        return [k for k in keys if self.declares(k)]

    @property
    def settings(self) -> RunSettings:
        capabilities = tuple(self.run.get("driver_capabilities", DEFAULT_CAPABILITIES))
        return RunSettings(env={**self.run.get("env", {}), "NVIDIA_DRIVER_CAPABILITIES": ",".join(capabilities)},
                           driver_capabilities=capabilities, gpus=self.run.get("gpus", "all"),
                           command=tuple(self.run.get("command", DEFAULT_COMMAND)),
                           python=self.run.get("python", "python3"),
                           cpus=float(self.run["cpus"]) if "cpus" in self.run else None,
                           shm_size=self.run.get("shm_size"))


def _check_table(path: Path, prefix: str, table: dict, keys: dict) -> None:
    for key, value in table.items():
        name = f"{prefix}{key}"
        if key not in keys:
            known = ", ".join(sorted(keys))
            shown = f"'{name}'" if schema.text(name, 80) else _shown(name)  # a key of control characters, say
            raise ManifestError(f"{path}: unknown key {shown} (known: {known})")
        valid, expected = keys[key]
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
    schemas = sections()
    tables = {k: v for k, v in data.items() if k in schemas}
    _check_table(path, "", {k: v for k, v in data.items() if k not in schemas}, TOP_LEVEL)
    for section, table in tables.items():
        if not isinstance(table, dict):
            raise ManifestError(f"{path}: key '{section}' must be a table ([{section}])")
        _check_table(path, f"{section}.", table, schemas[section])
    said = {f"{section}.{key}" for section, table in tables.items() for key in table}
    for requirement in requirements.registered().values():
        if requirement.manifest_key in said:
            for needed, when in requirement.needed_keys():
                if needed not in said and (when is None or when in said):
                    with_ = requirement.manifest_key + (f" with {when}" if when else "")
                    raise ManifestError(f"{path}: key '{needed}' is missing: {with_} needs it")
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
        requirements=tables.get("requirements", {}),
        run=tables.get("run", {}),
        thresholds=tables.get("thresholds", {}),
        workloads=tables.get("workloads", {}),
    )


def load_variants(images_dir: Path) -> dict[str, Variant]:
    """Every variant under images_dir, by name; raises ManifestError on the first bad one."""
    if not images_dir.is_dir():
        raise ManifestError(f"{images_dir}: no such images folder")
    folders = sorted(p for p in images_dir.iterdir() if p.is_dir() and not p.name.startswith((".", "_", "__pycache__")))
    return {folder.name: load_variant(folder) for folder in folders}
