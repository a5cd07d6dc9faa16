"""What an image is made of, recorded for every image a run validates and kept beside its verdict
as a CycloneDX SBOM (reports/verdicts/sbom/<cell>.cdx.json): its Debian packages, the Python
distributions its interpreter sees, its config (base image, ENV with secret values redacted,
ENTRYPOINT/CMD, USER, WORKDIR, labels), its layers and sizes, and its NVIDIA facts (the CUDA
runtime it carries, driver files baked into it, the driver capabilities it asks for).

Everything is asked of the running target (dpkg-query, the distributions probe, ldconfig) or of
the engine's API (the image's config and history), never read from the engine's storage: so it
works for any image, built or pulled. What could not be read is said in the SBOM ("unread"),
never left to look like an empty list. The SBOM names the image by its digest: a reader holds it
to the verdict's image (read()), so an SBOM left by another run of another image is never taken
for this one's. The promotion review (rendergate.release.review) compares two of them.
"""
from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from rendergate.core.diagnosis import Cause, CheckFailed
from rendergate.core.driver_capabilities import DRIVER_FILES
from rendergate.core.jsonfile import Unusable, parse, read_regular, write_whole
from rendergate.core.redact import printable, redact, remember_secrets

NAMESPACE = "rendergate"  # CycloneDX property names are namespaced: rendergate:env:PATH, ...
MAX_SBOM_BYTES = 64 * 2**20
_SECTION = "@@rendergate-section@@"


class SbomError(Exception):
    """An SBOM that cannot be read or is about another image; one line naming the file."""


@dataclass(frozen=True)
class Package:
    """An installed Debian package."""
    name: str
    version: str
    arch: str


@dataclass(frozen=True)
class Distribution:
    """A Python distribution the image's interpreter imports from `where`."""
    name: str
    version: str
    where: str


@dataclass(frozen=True)
class Layer:
    """One step of the image's history: the instruction that made it and what it added."""
    created_by: str
    size: int


@dataclass
class ImageConfig:
    """The image's config as its engine holds it (values of secret-named ENV redacted)."""
    env: dict[str, str] = field(default_factory=dict)
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    user: str = ""
    workdir: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    base: str = ""  # the base image, where known (OCI's base labels; rendergate's builds set them)
    base_digest: str = ""
    size: int = 0
    layers: list[Layer] = field(default_factory=list)


@dataclass
class Contents:
    """What an image is made of. `unread` says, per part, why it could not be read."""
    image_ref: str
    image_digest: str
    packages: list[Package] = field(default_factory=list)
    python: str = ""  # the interpreter whose distributions are listed ("": the image has none)
    distributions: list[Distribution] = field(default_factory=list)
    config: ImageConfig | None = None
    cuda_runtime: list[str] = field(default_factory=list)  # libcudart files the image carries
    driver_files: list[str] = field(default_factory=list)  # NVIDIA driver files baked in (not injected)
    capabilities: str = ""  # NVIDIA_DRIVER_CAPABILITIES the image's ENV asks for
    unread: dict[str, str] = field(default_factory=dict)


def record(target) -> Contents:
    """Ask the running target (and, for a container, its engine) what its image is made of."""
    image = target.image_info() or {}
    contents = Contents(image.get("ref", ""), image.get("digest", ""), python=target.python)
    _read_packages_and_cuda(target, contents)
    try:
        listed = target.probe("distributions", "--all", timeout=120)["distributions"]
        contents.distributions = sorted((Distribution(d["name"], d["version"], d["where"]) for d in listed),
                                        key=lambda d: (d.name.lower(), d.where))
    except CheckFailed as e:
        if e.diagnosis.cause == Cause.TOOL_MISSING:  # no such interpreter: an image without Python, none to list
            contents.python = ""
        else:
            contents.unread["python"] = f"{target.python} could not list its distributions: {_why(e)}"
    except (ValueError, KeyError, TypeError) as e:
        contents.unread["python"] = f"{target.python} could not list its distributions: {_why(e)}"
    try:
        contents.driver_files = sorted({name for name, _, _ in target.baked_driver_files(DRIVER_FILES)})
    except CheckFailed as e:
        contents.unread["driver_files"] = _why(e)
    try:
        contents.config = target.image_config()
    except CheckFailed as e:
        contents.unread["config"] = _why(e)
    if contents.config is None and "config" not in contents.unread:
        contents.unread["config"] = f"{type(target).__name__} has no engine to read the image's config from"
    else:
        contents.capabilities = contents.config.env.get("NVIDIA_DRIVER_CAPABILITIES", "")
    return contents


def _read_packages_and_cuda(target, contents: Contents) -> None:
    """dpkg's installed packages and the CUDA runtime libraries, in one command."""
    script = ("dpkg-query -W -f='${db:Status-Status}\\t${Package}\\t${Version}\\t${Architecture}\\n'; "
              f"echo {_SECTION} $?; "
              "{ ldconfig -p 2>/dev/null || /sbin/ldconfig -p; } | grep -o 'libcudart\\.so[^ ]*'; "
              "ls /usr/local/cuda*/lib64/ /usr/local/cuda*/targets/*/lib/ 2>/dev/null | grep '^libcudart\\.so'; true")
    try:
        result = target.run(script, timeout=120)
    except CheckFailed as e:
        contents.unread["packages"] = contents.unread["cuda_runtime"] = _why(e)
        return
    packages, _, rest = result.stdout.partition(_SECTION)
    status, _, cuda = rest.partition("\n")
    if status.strip() != "0":
        contents.unread["packages"] = ("no dpkg database (not a Debian-based image)" if status.strip() == "127"
                                       else f"dpkg-query failed: {printable(result.stderr.strip()[-200:])}")
    rows = [line.split("\t") for line in packages.splitlines()]
    contents.packages = sorted({Package(name, version, arch) for state, name, version, arch in
                                (r for r in rows if len(r) == 4) if state == "installed"}, key=lambda p: (p.name, p.arch))
    contents.cuda_runtime = sorted(set(cuda.split()))


def _why(error: Exception) -> str:
    return printable(str(error) or type(error).__name__)[:300]


def image_config(attrs: dict, history: list[dict]) -> ImageConfig:
    """An engine's inspect of an image and its history, as an ImageConfig (secret values redacted)."""
    config = attrs.get("Config") or {}
    env = dict(item.partition("=")[::2] for item in config.get("Env") or [])
    remember_secrets(env)
    labels = dict(config.get("Labels") or {})
    layers = [Layer(redact(printable(step.get("CreatedBy") or ""))[:500], int(step.get("Size") or 0)) for step in reversed(history)]
    return ImageConfig(env={name: redact(value) for name, value in env.items()}, entrypoint=config.get("Entrypoint"),
                       cmd=config.get("Cmd"), user=config.get("User") or "", workdir=config.get("WorkingDir") or "",
                       labels={k: redact(v) for k, v in labels.items()},
                       base=labels.get("org.opencontainers.image.base.name", ""),
                       base_digest=labels.get("org.opencontainers.image.base.digest", ""),
                       size=int(attrs.get("Size") or 0), layers=layers)


# The SBOM: CycloneDX JSON written by cyclonedx-python-lib, read back by its layout.

def _prop(name: str, value) -> "object":
    from cyclonedx.model import Property
    return Property(name=f"{NAMESPACE}:{name}", value=value if isinstance(value, str) else json.dumps(value))


def bom_json(contents: Contents) -> str:
    """The CycloneDX 1.6 JSON of `contents`: the image is the BOM's subject (a container
    component, its version the image digest), packages and distributions its components with
    their purls, config and NVIDIA facts properties of the image."""
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    properties = [_prop("python", contents.python), _prop("cuda_runtime", contents.cuda_runtime),
                  _prop("driver_files", contents.driver_files), _prop("driver_capabilities", contents.capabilities)]
    properties += [_prop(f"unread:{part}", why) for part, why in sorted(contents.unread.items())]
    if contents.config is not None:
        c = contents.config
        properties += [_prop("config:entrypoint", c.entrypoint), _prop("config:cmd", c.cmd), _prop("config:user", c.user),
                       _prop("config:workdir", c.workdir), _prop("config:base", c.base),
                       _prop("config:base_digest", c.base_digest), _prop("config:size", str(c.size))]
        properties += [_prop(f"env:{name}", value) for name, value in sorted(c.env.items())]
        properties += [_prop(f"label:{name}", value) for name, value in sorted(c.labels.items())]
        properties += [_prop(f"layer:{n:03d}", {"created_by": layer.created_by, "size": layer.size})
                       for n, layer in enumerate(c.layers)]
    image = Component(type=ComponentType.CONTAINER, name=contents.image_ref or "image", version=contents.image_digest,
                      bom_ref="image", properties=properties)
    parts = [Component(type=ComponentType.LIBRARY, name=p.name, version=p.version, bom_ref=f"deb:{p.name}:{p.arch}",
                       purl=PackageURL("deb", "debian", p.name, p.version, {"arch": p.arch})) for p in contents.packages]
    parts += [Component(type=ComponentType.LIBRARY, name=d.name, version=d.version, bom_ref=f"pypi:{d.name.lower()}:{d.where}",
                        purl=PackageURL("pypi", None, d.name.lower(), d.version), properties=[_prop("python:where", d.where)])
              for d in contents.distributions]
    bom = Bom(components=parts)
    bom.metadata.component = image
    bom.register_dependency(image, parts)  # the image holds each of them
    return JsonV1Dot6(bom).output_as_string(indent=1)


def from_bom(data: dict, where: str) -> Contents:
    """The Contents an SBOM of bom_json() holds; SbomError naming `where` when it is not one."""
    try:
        subject = data["metadata"]["component"]
        props = {p["name"].removeprefix(f"{NAMESPACE}:"): p.get("value", "") for p in subject.get("properties", [])
                 if p["name"].startswith(f"{NAMESPACE}:")}
        contents = Contents(subject["name"], subject.get("version", ""), python=props.get("python", ""),
                            cuda_runtime=json.loads(props.get("cuda_runtime", "[]")),
                            driver_files=json.loads(props.get("driver_files", "[]")),
                            capabilities=props.get("driver_capabilities", ""),
                            unread={k.removeprefix("unread:"): v for k, v in props.items() if k.startswith("unread:")})
        if "config:size" in props:
            layers = sorted((k, json.loads(v)) for k, v in props.items() if k.startswith("layer:"))
            contents.config = ImageConfig(
                env={k.removeprefix("env:"): v for k, v in props.items() if k.startswith("env:")},
                entrypoint=json.loads(props["config:entrypoint"]), cmd=json.loads(props["config:cmd"]),
                user=props["config:user"], workdir=props["config:workdir"], base=props["config:base"],
                base_digest=props["config:base_digest"], size=int(props["config:size"]),
                labels={k.removeprefix("label:"): v for k, v in props.items() if k.startswith("label:")},
                layers=[Layer(layer["created_by"], int(layer["size"])) for _, layer in layers])
        for c in data.get("components", []):
            purl = c.get("purl", "")
            if purl.startswith("pkg:deb/"):
                arch = purl.partition("?arch=")[2].split("&")[0]
                contents.packages.append(Package(c["name"], c["version"], arch))
            elif purl.startswith("pkg:pypi/"):
                where = next((p["value"] for p in c.get("properties", []) if p["name"] == f"{NAMESPACE}:python:where"), "")
                contents.distributions.append(Distribution(c["name"], c["version"], where))
        contents.packages.sort(key=lambda p: (p.name, p.arch))
        contents.distributions.sort(key=lambda d: (d.name.lower(), d.where))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise SbomError(f"{where}: not an SBOM rendergate wrote ({type(e).__name__}: {printable(str(e))[:100]})") from None
    return contents


def sbom_path(verdict_path: Path) -> Path:
    """Where the SBOM of a verdict's image is kept: beside it, in a folder of its own that globs of
    the verdicts (verdicts/*.json) do not reach: reports/verdicts/sbom/manim.cdx.json."""
    return verdict_path.parent / "sbom" / (verdict_path.name.removesuffix(".json") + ".cdx.json")


def write(path: Path, contents: Contents) -> None:
    write_whole(path, bom_json(contents))


def read(path: Path, image_digest: str | None) -> Contents:
    """The SBOM at `path`, held to the image it must be about (`image_digest`; None: any)."""
    try:
        data = parse(read_regular(path, MAX_SBOM_BYTES))
    except FileNotFoundError:
        raise SbomError(f"{path}: no SBOM (the run that wrote the verdict recorded none: run the suites again)") from None
    except Unusable as e:
        raise SbomError(f"{path}: not a readable SBOM: {e}") from None
    contents = from_bom(data, str(path))
    if image_digest and contents.image_digest != image_digest:
        raise SbomError(f"{path}: an SBOM of image {printable(contents.image_digest)[:80]}, not of the verdict's "
                        f"{image_digest} (left by another run: run the suites again)")
    return contents


def quoted(words: list[str] | None) -> str:
    """An ENTRYPOINT or CMD as a reviewer reads it."""
    return "(none)" if words is None else " ".join(shlex.quote(w) for w in words)

