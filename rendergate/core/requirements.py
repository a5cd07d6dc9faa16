"""The requirement registry: every manifest key a check proves, declared once, beside its checks.

A check module declares the requirement its checks prove and marks them with it:

    MY_CODEC = declare("my_codec", schema.boolean, "true or false", "my_codec encodes on the GPU",
                       capabilities={"video"}, gpu_feature=NVENC)
    pytestmark = requires(MY_CODEC)  # rendergate.plugin.requires: the plugin makes the marks

rendergate's own suites do it so, and so does a user's folder of checks (`--checks DIR`, or the
ini option `rendergate_checks`): its `test_*.py` modules are imported before any manifest is
read, so a manifest may then say `my_codec = true`. Whatever knows about requirements reads them
here: manifest validation (the key and its value), the driver-capability check (what each needs
of NVIDIA_DRIVER_CAPABILITIES), "not supported by this GPU" (its GPU feature), the report's
matrix (what each row proves) and the docs table (`rendergate requirements`). A key nobody
declared stays an unknown key of the manifest.
"""
from __future__ import annotations

import hashlib
import os
import re
import sys
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rendergate.core import schema
from rendergate.core.gpuinfo import GpuInfo, nvenc_lacking, optix_lacking

SECTIONS = ("requirements", "workloads")  # the manifest tables requirements are keys of
_KEY = re.compile(r"(?:workloads\.)?[a-z][a-z0-9_]{0,63}")


class RegistryError(Exception):
    """A declaration or a folder of checks that cannot be used; one line naming the module."""


@dataclass(frozen=True)
class GpuFeature:
    """A feature some GPUs lack by design (NVENC on an H100): on such a GPU a check of it is "not
    supported by this GPU", a hardware limit, unless the variant says it must have it
    (requirements.gpu_must_have)."""
    name: str
    lacking: Callable[[GpuInfo, str | None], str | None]  # why the GPU cannot (for a check's item); None: it can, or unknown


NVENC = GpuFeature("nvenc", nvenc_lacking)
OPTIX = GpuFeature("optix", optix_lacking)


@dataclass(frozen=True)
class Requirement:
    """One manifest key, what a valid value is, what it needs, and the checks that prove it."""
    key: str  # "nvenc" (a key of [requirements]) or "workloads.encode"
    valid: Callable[[object], bool]
    expected: str  # what a valid value looks like, as a manifest error says it
    proves: str  # one line: what its checks prove (the docs table, the report's matrix)
    capabilities: frozenset[str] = frozenset()  # the NVIDIA_DRIVER_CAPABILITIES it needs
    item_capabilities: Mapping[str, frozenset[str]] = field(default_factory=dict)  # per item of a list value
    gpu_feature: GpuFeature | None = None  # what its GPU checks need of the GPU
    needs: tuple[str, ...] = ()  # other manifest keys that must be said with it ("requirements.cycles_devices")
    thresholds: Mapping[str, float] = field(default_factory=dict)  # thresholds.NAME it is gated by (said with
    # it, then): the value a proposed manifest starts with
    needs_with: Mapping[str, str] = field(default_factory=dict)  # KEY: a threshold needed only when KEY is said too
    example: str = ""  # a TOML value, for a proposed manifest and the docs
    qualifier: bool = False  # qualifies other requirements: no checks of its own, never judged
    origin: str = ""  # the module that declared it

    @property
    def section(self) -> str:
        return "workloads" if self.key.startswith("workloads.") else "requirements"

    @property
    def name(self) -> str:
        """The key within its section: "encode" for workloads.encode."""
        return self.key.removeprefix("workloads.")

    @property
    def mark(self):
        """The mark as rendergate 0.2 made it; rendergate.plugin.requires(requirement) makes it now."""
        warnings.warn("Requirement.mark: mark checks with rendergate.plugin.requires(requirement)", DeprecationWarning,
                      stacklevel=2)
        from rendergate.plugin import requires  # the plugin's: imported only for a check module that asks
        return requires(self)

    @property
    def manifest_key(self) -> str:
        return f"{self.section}.{self.name}"

    def needed_keys(self) -> list[tuple[str, str | None]]:
        """(manifest key, the key it is needed with or None: always) that must be said with it:
        its `needs`, and the thresholds it is gated by (those of `needs_with` only alongside theirs)."""
        alongside = {needed: when for when, needed in self.needs_with.items()}
        return ([(key, None) for key in self.needs]
                + [(f"thresholds.{name}", alongside.get(f"thresholds.{name}")) for name in self.thresholds])

    def needed_capabilities(self, value) -> dict[str, set[str]]:
        """Capability -> who needs it ("cycles_devices OPTIX"), for the value a manifest gives."""
        found: dict[str, set[str]] = {c: {self.key} for c in self.capabilities}
        for item in value if isinstance(value, list) else ():
            for capability in self.item_capabilities.get(item, ()):
                found.setdefault(capability, set()).add(f"{self.key} {item}")
        return found


@dataclass(frozen=True)
class Check:
    """A check function of a module the registry loaded: what a complete run holds of it, per
    variant that declares its requirement."""
    name: str  # the function's name, as verdicts name the check
    requirement: str
    module: str  # the file it is defined in
    per_item: bool  # it takes `requirement`: one run per item of a list value (an encoder, a backend)
    container_only: bool  # about containers: not run on a variant checked on the host
    cases: int = 1  # the runs of its own parametrize marks (per item)


_REGISTRY: dict[str, Requirement] = {}
_CHECKS: dict[str, list[Check]] = {}  # by the module's file
_LOADED: set[Path] = set()  # the folders of checks loaded


def declare(key: str, valid: Callable[[object], bool], expected: str, proves: str, **details) -> Requirement:
    """Register a requirement (in the module whose checks prove it) and return it. Declaring it
    again from the same module (pytest imports it again) replaces it; from another, fails."""
    origin = sys._getframe(1).f_globals.get("__file__", "")
    if not _KEY.fullmatch(key):
        raise RegistryError(f"{origin}: requirement {key!r}: a key is lower-case letters, digits and _ "
                            "(workloads.NAME for a workload)")
    if "capabilities" in details:
        details["capabilities"] = frozenset(details["capabilities"])
    if "item_capabilities" in details:
        details["item_capabilities"] = {k: frozenset(v) for k, v in details["item_capabilities"].items()}
    requirement = Requirement(key, valid, expected, proves, origin=origin, **details)
    known = _REGISTRY.get(key)
    if known and Path(known.origin).resolve() != Path(origin).resolve():
        raise RegistryError(f"{origin}: requirement '{key}' is declared already, in {known.origin}: "
                            "one requirement, one declaration")
    _REGISTRY[key] = requirement
    return requirement


def params_of(value, per_item: bool) -> list:
    """What a check's `requirement` is given, one run each: the items of a list value, else the
    value itself. The one place this is decided: the suites parametrize by it, the gate expects it."""
    return list(value) if per_item and isinstance(value, list) else [value]


def item_of(param) -> str | None:
    """A run's item, as verdicts name it: the text of its `requirement` (an encoder, a vendor); None
    for a value that is not one (true, a table)."""
    return param if isinstance(param, str) else None


def expected_checks(variant) -> dict[tuple[str, str, str | None], int]:
    """Every (requirement, check, item) a complete run of `variant` holds, with how many runs of
    it: each check of each requirement its manifest declares, per item of a list value; checks
    about containers only where it runs in one. From the registry and the manifest alone."""
    registered()  # rendergate's suites loaded, at least
    expected: dict[tuple[str, str, str | None], int] = {}
    for check in (c for checks in _CHECKS.values() for c in checks):
        if not variant.declares(check.requirement) or (check.container_only and variant.host):
            continue
        for param in params_of(variant.declared(check.requirement), check.per_item):
            key = (check.requirement, check.name, item_of(param) if check.per_item else None)
            expected[key] = expected.get(key, 0) + check.cases
    return expected


def declared() -> dict[str, Requirement]:
    """The requirements declared so far (no module loaded for it)."""
    return dict(_REGISTRY)


def record_checks(path: Path, checks: list[Check]) -> None:
    """The checks a module holds (rendergate.plugin.check_modules reads them), by its file."""
    _CHECKS[str(path)] = checks


# Folders pytest does not recurse into by default (its `norecursedirs`): never folders of checks.
_NOT_CHECKS = re.compile(r"\..*|.*\.egg|_darcs|build|CVS|dist|node_modules|venv|\{arch\}|__pycache__")

def walk(folder: Path) -> list[Path]:
    """Every file below `folder`, through symlinked folders too (pytest collects from them), each
    folder once; never in the folders pytest does not recurse into by default, nor in caches."""
    found, seen = [], set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not _NOT_CHECKS.fullmatch(d))
        found += [Path(root) / f for f in sorted(files)]
    return found

def checks_digest() -> str:
    """The code of the folders of checks loaded, as a digest: every file in them (helpers, data,
    sourceless modules; caches aside) and the conftest.py of every folder above them (pytest
    loads those too). A verdict names the one its run had, and the gate, holding it to the checks
    it loads itself, refuses a verdict of other checks (another version, or none)."""
    digest = hashlib.sha256()
    for folder in sorted(_LOADED):
        above = [parent / "conftest.py" for parent in reversed(folder.parents) if (parent / "conftest.py").is_file()]
        for path in above + walk(folder):
            name = os.path.relpath(path, folder).encode()  # the same wherever the repo is checked out
            digest.update(len(name).to_bytes(4, "big") + name + hashlib.sha256(path.read_bytes()).digest())
    return "sha256:" + digest.hexdigest()


def record_folder(folder: Path) -> None:
    """A folder of checks whose modules were loaded: its code is in the run's checks_digest."""
    _LOADED.add(folder)


def folder_loaded(folder: Path) -> bool:
    return folder in _LOADED


def declare_qualifiers() -> None:
    features = sorted({r.gpu_feature.name for r in _REGISTRY.values() if r.gpu_feature})
    declare("gpu_must_have", schema.list_of(schema.one_of(set(features))),
            f"a list of GPU features the variant needs on every host, from: {', '.join(map(repr, features))} "
            '(a GPU without them then fails the variant instead of "not supported by this GPU")',
            "the GPU features named fail, rather than skip, on a GPU without them", qualifier=True,
            example='["nvenc"]')


def registered() -> dict[str, Requirement]:
    """The registry as it stands (rendergate's suites loaded first)."""
    if "gpu_must_have" not in _REGISTRY:  # loading check modules is the plugin's: they are pytest modules
        from rendergate.plugin.check_modules import load
        load()
    return dict(_REGISTRY)


def qualifiers() -> set[str]:
    """The keys that qualify other requirements (gpu_must_have): never proven, never judged."""
    return {key for key, r in registered().items() if r.qualifier}


def of_section(section: str) -> dict[str, Requirement]:
    """The requirements of one manifest table, by their key in it."""
    return {r.name: r for r in registered().values() if r.section == section}


def get(key: str) -> Requirement | None:
    return registered().get(key)


def docs_table() -> str:
    """The README's table of requirement keys, as the registry declares them."""
    rows = ["| key | value | what its checks prove | needs of NVIDIA_DRIVER_CAPABILITIES | GPU feature |",
            "|---|---|---|---|---|"]
    for r in registered().values():
        caps = sorted(r.capabilities) + [f"{item}: {','.join(sorted(c))}" for item, c in r.item_capabilities.items() if c]
        rows.append(f"| `{r.manifest_key}` | {r.expected} | {r.proves} | {'; '.join(caps) or '—'} | "
                    f"{r.gpu_feature.name if r.gpu_feature else '—'} |")
    return "\n".join(row.replace("\n", " ") for row in rows) + "\n"
