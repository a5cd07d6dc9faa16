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

import itertools
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from rendergate.core.diagnosis import Cause, CheckFailed
from rendergate.core.driver_capabilities import DRIVER_FILES
from rendergate.core.jsonfile import Unusable, parse, read_regular, write_whole
from rendergate.core.redact import REDACTED, printable, redact, secret_named

NAMESPACE = "rendergate"  # CycloneDX property names are namespaced: rendergate:env:PATH, ...
MAX_SBOM_BYTES = 64 * 2**20
RECORD_TIMEOUT = 20  # seconds a listing may take (dpkg-query takes 0.1 s): it delays the first check of the image
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
    """A layer of the image: its content's digest (the engine's diff id), and the step that made it
    and what that added, where the history says for certain ("" and None where it does not)."""
    created_by: str
    size: int | None  # None: not known (no step is certainly its maker)
    digest: str = ""


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
        listed = target.probe("distributions", "--all", timeout=RECORD_TIMEOUT)["distributions"]
        contents.distributions = sorted((Distribution(str(d["name"]), str(d["version"] or ""), str(d["where"]))
                                         for d in listed if d["name"]),  # a METADATA without a Name names nothing
                                        key=lambda d: (d.name.lower(), d.where))
    except CheckFailed as e:
        if e.diagnosis.cause == Cause.TOOL_MISSING:  # no such interpreter: none to list (the review compares interpreters)
            contents.python = ""
        else:
            contents.unread["python"] = f"{target.python} could not list its distributions: {_why(e)}"
    except (ValueError, KeyError, TypeError) as e:
        contents.unread["python"] = f"{target.python} could not list its distributions: {_why(e)}"
    try:
        contents.driver_files = sorted({name for name, _, _ in target.baked_driver_files(DRIVER_FILES, RECORD_TIMEOUT)})
    except CheckFailed as e:
        contents.unread["driver_files"] = _why(e)
    try:
        contents.config = target.image_config()
    except CheckFailed as e:
        contents.unread["config"] = _why(e)
    if contents.config is not None:
        contents.capabilities = contents.config.env.get("NVIDIA_DRIVER_CAPABILITIES", "")
    elif "config" not in contents.unread:
        contents.unread["config"] = f"{type(target).__name__} has no engine to read the image's config from"
    return contents


def _read_packages_and_cuda(target, contents: Contents) -> None:
    """dpkg's installed packages and the CUDA runtime libraries, in one command, each part under a
    time limit of its own (a hung ldconfig must not cost the packages, nor be blamed on dpkg)."""
    script = (f"timeout {RECORD_TIMEOUT // 2} dpkg-query -W -f='${{db:Status-Status}}\t${{Package}}\t${{Version}}\t${{Architecture}}\n'; "
              f"echo {_SECTION} $?; "
              f"{{ timeout {RECORD_TIMEOUT // 4} ldconfig -p 2>/dev/null || timeout {RECORD_TIMEOUT // 4} /sbin/ldconfig -p; }} "
              f"| grep -o 'libcudart\\.so[^ ]*'; echo {_SECTION} $?; "
              "ls /usr/local/cuda*/lib64/ /usr/local/cuda*/targets/*/lib/ 2>/dev/null | grep '^libcudart\\.so'; true")
    try:
        result = target.run(script, timeout=RECORD_TIMEOUT)
    except CheckFailed as e:
        contents.unread["packages"] = contents.unread["cuda_runtime"] = _why(e)
        return
    packages, _, rest = result.stdout.partition(_SECTION)
    status, _, rest = rest.partition("\n")
    cached, _, rest = rest.partition(_SECTION)
    cache_status, _, listed = rest.partition("\n")
    said = {"0": None, "127": "no dpkg database (not a Debian-based image)",
            "124": f"dpkg-query did not finish within {RECORD_TIMEOUT // 2} s"}
    why = said.get(status.strip(), f"dpkg-query failed (exit {status.strip()}): {printable(result.stderr.strip()[-200:])}")
    if why:
        contents.unread["packages"] = why.rstrip(": ")
    else:
        rows = [line.split("\t") for line in packages.splitlines()]
        contents.packages = sorted({Package(name, version, arch) for state, name, version, arch in
                                    (r for r in rows if len(r) == 4) if state == "installed"}, key=lambda p: (p.name, p.arch))
    if cache_status.strip() == "124":
        contents.unread["cuda_runtime"] = f"ldconfig -p did not finish within {RECORD_TIMEOUT // 4} s"
    contents.cuda_runtime = sorted(set(cached.split()) | set(listed.split()))


def _why(error: Exception) -> str:
    return printable(str(error) or type(error).__name__)[:300]


# History steps that only ever change the config, as the classic builder and BuildKit write them:
# never a layer (WORKDIR is not one of them: it makes a layer when it creates its folder).
_CONFIG_ONLY = re.compile(r"^(/bin/sh -c #\(nop\)\s+|)(ENV|LABEL|CMD|ENTRYPOINT|USER|EXPOSE|VOLUME|STOPSIGNAL|HEALTHCHECK"
                          r"|SHELL|ONBUILD|ARG|MAINTAINER)\b")
# A secret-named option or variable and its value, however short (the general redaction leaves values
# of under 4 characters, which in a log are rarely secrets; in an image's config they may be).
_SECRET_OPTION = re.compile(r"(?i)((?<![\w-])--?(?!-)(?!no-)([A-Za-z0-9_.-]*(?:TOKEN|SECRET|PASSWORD|PASSWD|APIKEY|_KEY|CREDENTIALS?)"
                            r"(?![A-Za-z0-9_.-]*(?:file|path|dir)\b)[A-Za-z0-9_.-]*)(?:=|\s+))([^\s\"'=][^\s\"']*)")
_SECRET_SETTING = re.compile(r"(?i)(\b[A-Za-z0-9_.-]*(?:TOKEN|SECRET|PASSWORD|PASSWD|APIKEY|_KEY|CREDENTIALS?)[A-Za-z0-9_]*=)"
                             r"([^\s\"']+)")


class _Secrets:
    """What an image's own config says is secret (the values of its secret-named ENV and labels),
    blanked wherever this image's SBOM would show them; nothing is remembered beyond it."""

    def __init__(self, *named: dict[str, str]):
        self.values = sorted({v for values in named for k, v in values.items() if secret_named(k) and len(v) >= 3},
                             key=len, reverse=True)

    def text(self, text: str) -> str:
        for value in self.values:
            text = text.replace(value, REDACTED)
        text = _SECRET_OPTION.sub(lambda m: m.group(1) + REDACTED, redact(text))
        return _SECRET_SETTING.sub(lambda m: m.group(1) + REDACTED, text)

    def values_of(self, named: dict[str, str]) -> dict[str, str]:
        return {name: REDACTED if secret_named(name) else self.text(value) for name, value in named.items()}


def _layers(diff_ids: list[str], history: list[dict], secrets: _Secrets) -> list[Layer]:
    """The image's layers (by their content's digest), each with the history's step that made it
    where that is certain, else none ("" and None). A step that added bytes made a layer and a step
    that only sets config made none; a step that added nothing (a RUN that changed nothing, a
    WORKDIR) may have made one or not: a layer is credited to a step only when every way of
    reading those steps that gives the image's number of layers credits it to that same step."""
    steps = list(reversed(history))  # oldest first, as the layers are
    made = [1 if int(s.get("Size") or 0) > 0 else 0 if _CONFIG_ONLY.match(s.get("CreatedBy") or "") else None for s in steps]
    unsure = [n for n, m in enumerate(made) if m is None]
    wanted = len(diff_ids) - sum(m for m in made if m)
    credited: list[int | None] | None = None
    if 0 <= wanted <= len(unsure) <= 16:
        for chosen in itertools.combinations(unsure, wanted):
            reading = [n for n, m in enumerate(made) if m == 1 or n in chosen]  # the step of each layer, in order
            credited = reading if credited is None else [a if a == b else None for a, b in zip(credited, reading)]
    credited = credited or [None] * len(diff_ids)
    return [Layer(secrets.text(printable(steps[n].get("CreatedBy") or ""))[:500], int(steps[n].get("Size") or 0), digest)
            if n is not None else Layer("", None, digest) for digest, n in zip(diff_ids, credited)]


def image_config(attrs: dict, history: list[dict]) -> ImageConfig:
    """An engine's inspect of an image and its history, as an ImageConfig (secret values redacted)."""
    config = attrs.get("Config") or {}
    env = dict(item.partition("=")[::2] for item in config.get("Env") or [])
    labels = dict(config.get("Labels") or {})
    secrets = _Secrets(env, labels)
    # ENTRYPOINT and CMD run as one command line (CMD its arguments): a secret-named option at the end
    # of one takes its value from the other.
    entrypoint, cmd = ([str(w) for w in config[key]] if config.get(key) is not None else None for key in ("Entrypoint", "Cmd"))
    whole = [*(entrypoint or []), *(cmd or [])]
    words = [REDACTED if n and "=" not in whole[n - 1] and _SECRET_OPTION.fullmatch(f"{whole[n - 1]} x")
             else secrets.text(word) for n, word in enumerate(whole)]
    split = len(entrypoint or [])
    return ImageConfig(env=secrets.values_of(env), entrypoint=None if entrypoint is None else words[:split],
                       cmd=None if cmd is None else words[split:], user=config.get("User") or "",
                       workdir=config.get("WorkingDir") or "", labels=secrets.values_of(labels),
                       base=labels.get("org.opencontainers.image.base.name", ""),
                       base_digest=labels.get("org.opencontainers.image.base.digest", ""),
                       size=int(attrs.get("Size") or 0),
                       layers=_layers(list((attrs.get("RootFS") or {}).get("Layers") or []), history, secrets))


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
        properties += [_prop(f"layer:{n:03d}", {"digest": layer.digest, "created_by": layer.created_by, "size": layer.size})
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


STRINGS = "a list of strings"


def _typed(value, kind, what: str):
    """`value` when it is of `kind` (a type, or STRINGS), else ValueError naming `what`."""
    if kind == STRINGS:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    else:
        ok = isinstance(value, kind) and not isinstance(value, bool)
    if not ok:
        raise ValueError(f"{what} is not {kind if kind == STRINGS else kind.__name__}")
    return value


def _json(props: dict, key: str, kind, default):
    """A property holding JSON (a list of strings; or null, where `default` is None)."""
    value = json.loads(props[key]) if key in props else default
    return value if value is None and default is None else _typed(value, kind, key)


def from_bom(data: dict, where: str) -> Contents:
    """The Contents an SBOM of bom_json() holds; SbomError naming `where` when it is not one."""
    try:
        subject = _typed(_typed(data, dict, "the document")["metadata"], dict, "metadata")["component"]
        props = {_typed(p["name"], str, "a property's name").removeprefix(f"{NAMESPACE}:"): _typed(p.get("value", ""), str, p["name"])
                 for p in _typed(subject.get("properties", []), list, "properties")
                 if _typed(p, dict, "a property")["name"].startswith(f"{NAMESPACE}:")}
        contents = Contents(_typed(subject["name"], str, "the image's name"), _typed(subject.get("version", ""), str, "the image's digest"),
                            python=props.get("python", ""), cuda_runtime=_json(props, "cuda_runtime", STRINGS, []),
                            driver_files=_json(props, "driver_files", STRINGS, []),
                            capabilities=props.get("driver_capabilities", ""),
                            unread={k.removeprefix("unread:"): v for k, v in props.items() if k.startswith("unread:")})
        if "config:size" in props:
            layers = [_typed(json.loads(v), dict, k) for k, v in sorted(props.items()) if k.startswith("layer:")]
            contents.config = ImageConfig(
                env={k.removeprefix("env:"): v for k, v in props.items() if k.startswith("env:")},
                entrypoint=_json(props, "config:entrypoint", STRINGS, None), cmd=_json(props, "config:cmd", STRINGS, None),
                user=props["config:user"], workdir=props["config:workdir"], base=props["config:base"],
                base_digest=props["config:base_digest"], size=int(props["config:size"]),
                labels={k.removeprefix("label:"): v for k, v in props.items() if k.startswith("label:")},
                layers=[Layer(_typed(layer["created_by"], str, "a layer's step"),
                              None if layer["size"] is None else _typed(layer["size"], int, "a layer's size"),
                              _typed(layer.get("digest", ""), str, "a layer's digest")) for layer in layers])
        for c in _typed(data.get("components", []), list, "components"):
            purl = _typed(_typed(c, dict, "a component").get("purl", ""), str, "a purl")
            if purl.startswith(("pkg:deb/", "pkg:pypi/")):
                name, version = _typed(c["name"], str, "a component's name"), _typed(c.get("version", ""), str, "a version")
            if purl.startswith("pkg:deb/"):
                contents.packages.append(Package(name, version, purl.partition("?arch=")[2].split("&")[0]))
            elif purl.startswith("pkg:pypi/"):
                where = next((p["value"] for p in c.get("properties", []) if p["name"] == f"{NAMESPACE}:python:where"), "")
                contents.distributions.append(Distribution(name, version, _typed(where, str, "a distribution's folder")))
        contents.packages.sort(key=lambda p: (p.name, p.arch))
        contents.distributions.sort(key=lambda d: (d.name.lower(), d.where))
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as e:
        raise SbomError(f"{where}: not an SBOM rendergate wrote ({type(e).__name__}: {printable(str(e))[:100]})") from None
    return contents


def sbom_path(verdict_path: Path) -> Path:
    """Where the SBOM of a verdict's image is kept: beside it, in a folder of its own that globs of
    the verdicts (verdicts/*.json) do not reach: reports/verdicts/sbom/manim.cdx.json."""
    return verdict_path.parent / "sbom" / (verdict_path.name.removesuffix(".json") + ".cdx.json")


def write(path: Path, contents: Contents) -> None:
    write_whole(path, bom_json(contents))


def read_document(path: Path, image_digest: str | None) -> tuple[dict, Contents]:
    """The SBOM at `path` as its JSON document and as Contents, read once, held to the image it
    must be about (`image_digest`; None: any)."""
    try:
        data = parse(read_regular(path, MAX_SBOM_BYTES))
    except FileNotFoundError:
        raise SbomError(f"{path}: no SBOM (a run records one beside each verdict, and promotion keeps it; none is "
                        "here for this verdict)") from None
    except Unusable as e:
        raise SbomError(f"{path}: not a readable SBOM: {e}") from None
    contents = from_bom(data, str(path))
    if image_digest and contents.image_digest != image_digest:
        raise SbomError(f"{path}: an SBOM of image {printable(contents.image_digest)[:80]}, not of the verdict's "
                        f"{image_digest} (left by another run: run the suites again)")
    return data, contents


def read(path: Path, image_digest: str | None) -> Contents:
    """The SBOM at `path`, held to the image it must be about (`image_digest`; None: any)."""
    return read_document(path, image_digest)[1]


def quoted(words: list[str] | None) -> str:
    """An ENTRYPOINT or CMD as a reviewer reads it."""
    return "(none)" if words is None else " ".join(shlex.quote(w) for w in words)

