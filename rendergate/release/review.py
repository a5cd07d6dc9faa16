"""The promotion review: what changed between the candidate image and the last promoted one of the
same variant, from their verdicts and the SBOMs beside them (rendergate.core.contents).

Packages added, removed, upgraded or downgraded (Debian's version order, Python's), those that own
files the checks use marked (the mutation trace of `rendergate mutate` knows them); config
changes (base, ENV, ENTRYPOINT/CMD, USER, WORKDIR, labels); layers by their content, with the step
that made each where that is certain, and the size; requirement and check outcomes that changed; every timed figure beside the
promoted one, with their paired spreads (the speed gate's regression rule decided, in the run; the
review shows the numbers). What could not be compared is said, never shown as "no change".
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from rendergate.checks.timing import Series
from rendergate.core import contents as sboms
from rendergate.core.contents import Contents, SbomError
from rendergate.core.diagnosis import Cause
from rendergate.core.jsonfile import Unusable, parse, read_regular
from rendergate.core.judging import judged_checks, requirement_outcomes
from rendergate.core.outcomes import NOT_COUNTED
from rendergate.core.platforms import Platform
from rendergate.core.redact import REDACTED, printable
from rendergate.core import verdict as verdicts
from rendergate.core.verdict import Verdict

MAX_MUTATION_BYTES = 64 * 2**20
HEADLINE_PACKAGES = 3  # packages named in the one-line summary; the rest are counted


@dataclass(frozen=True)
class PackageChange:
    """A Debian package ("deb") or Python distribution ("python") that is new, gone or at another version."""
    kind: str
    name: str
    old: str | None  # None: added
    new: str | None  # None: removed
    change: str  # added, removed, upgraded, downgraded, changed (versions that do not order)
    used: bool = False  # it owns files the checks use (the mutation trace)

    def line(self) -> str:
        used = " [used by the checks]" if self.used else ""
        versions = {"added": f"{self.new}", "removed": f"{self.old}"}.get(self.change, f"{self.old} -> {self.new}")
        return f"{self.change} {self.kind} {self.name} {versions}{used}"


@dataclass(frozen=True)
class ConfigChange:
    what: str  # "ENV CUDA_VERSION", "USER", "ENTRYPOINT", "label org.opencontainers.image.version", "base"
    old: str | None
    new: str | None

    def line(self) -> str:
        if self.old is None:
            return f"{self.what} added: {self.new}"
        if self.new is None:
            return f"{self.what} removed (was {self.old})"
        return f"{self.what}: {self.old} -> {self.new}"


@dataclass(frozen=True)
class LayerChange:
    """A layer whose content is in one image only (by its digest): added, removed, or rebuilt (the
    same step made other content)."""
    change: str  # added, removed, rebuilt
    created_by: str  # "" where the history does not say for certain which step made it
    size: int | None  # None: not known
    digest: str
    old_size: int | None = None  # rebuilt: what the promoted image's layer added

    def line(self) -> str:
        made = (f"(layer {self.digest[:19]}: the history cannot be matched to the layers for certain)" if self.size is None
                else self.created_by[:160] or "(its step names no command: a base imported from a tarball, say)")
        if self.change == "rebuilt":
            return f"layer rebuilt (other content): {_size(self.old_size)} -> {_size(self.size)} {made}"
        return f"layer {self.change}: {_size(self.size)} {made}"


@dataclass(frozen=True)
class OutcomeChange:
    what: str  # "requirement latex" or "check test_mathtex[...]"
    old: str | None  # None: it was not there
    new: str | None

    def line(self) -> str:
        return f"{self.what}: {self.old or 'absent'} -> {self.new or 'absent'}"


@dataclass(frozen=True)
class FigureChange:
    """A timed figure of a check, candidate beside promoted: the speedup and its paired spread, and
    the timed workload's median (the candidate side of the pair)."""
    check: str
    figure: str
    old_speedup: float
    new_speedup: float
    old_spread: float
    new_spread: float
    old_median_s: float
    new_median_s: float
    regressed: bool  # the run's speed gate failed it as a regression against the promoted figure

    @property
    def faster(self) -> float:
        """How much faster the timed workload ran (negative: slower)."""
        return self.old_median_s / self.new_median_s - 1 if self.new_median_s else 0.0

    def short(self) -> str:
        return f"{self.figure} {abs(self.faster):.0%} {'faster' if self.faster >= 0 else 'slower'}"

    def line(self) -> str:
        said = " [regressed: the speed gate failed it]" if self.regressed else ""
        return (f"{self.check} {self.figure}: speedup {self.new_speedup:.2f}x (paired spread {self.new_spread:.0%}) vs "
                f"{self.old_speedup:.2f}x ({self.old_spread:.0%}); median {self.new_median_s:.2f} s vs "
                f"{self.old_median_s:.2f} s: {self.short()}{said}")


@dataclass
class Review:
    """What changed from `promoted` to `candidate`; `unread`: what could not be compared, and why."""
    variant: str
    candidate: dict  # the image: ref, digest
    promoted: dict  # the image: ref, digest, to (its promoted name), at
    packages: list[PackageChange] = field(default_factory=list)
    config: list[ConfigChange] = field(default_factory=list)
    layers: list[LayerChange] = field(default_factory=list)
    size_change: int | None = None  # bytes; None: not known
    outcomes: list[OutcomeChange] = field(default_factory=list)
    figures: list[FigureChange] = field(default_factory=list)
    used_from: str | None = None  # the mutation trace that marked the packages the checks use
    unread: list[str] = field(default_factory=list)
    hidden: list[str] = field(default_factory=list)  # what redaction keeps from comparing (said in lines(), not the headline)

    def same_image(self) -> bool:
        return bool(self.candidate.get("digest")) and self.candidate.get("digest") == self.promoted.get("digest")

    def headline(self) -> str:
        """One line: "Changes since promoted <digest>: 14 Debian packages upgraded (ffmpeg 5.1.6 -> 5.1.7,
        ...), 1 removed, +38 MB, encode 4% faster"."""
        since = f"Changes since promoted {(self.promoted.get('digest') or 'image (none named)')[:19]}"
        parts = ["the same image"] if self.same_image() else []
        for kind, named in (("deb", "Debian package"), ("python", "Python distribution")):
            for change in ("upgraded", "downgraded", "changed", "added", "removed"):
                found = [p for p in self.packages if p.kind == kind and p.change == change]
                if found:
                    listed = ", ".join(f"{p.name} {p.old} -> {p.new}" if p.old and p.new else p.name
                                       for p in found[:HEADLINE_PACKAGES]) + (", ..." if len(found) > HEADLINE_PACKAGES else "")
                    parts.append(f"{len(found)} {named}{'s' * (len(found) != 1)} {change} ({listed})")
        if self.config:
            parts.append(f"config: {', '.join(dict.fromkeys(c.what for c in self.config))}")
        layers = Counter(layer.change for layer in self.layers)
        if layers:
            parts.append("layers: " + ", ".join(f"{layers[c]} {c}" for c in ("rebuilt", "added", "removed") if layers[c]))
        if self.size_change:
            parts.append(f"{'+' if self.size_change > 0 else '-'}{_size(abs(self.size_change))}")
        if self.outcomes:
            parts.append(f"{len(self.outcomes)} outcome{'s' * (len(self.outcomes) != 1)} changed")
        parts += [f.short() for f in self.figures]
        if self.unread:
            parts.append(f"not compared: {'; '.join(self.unread)}")
        return f"{since}: {', '.join(parts) or 'nothing the SBOMs and verdicts show'}"

    def lines(self) -> list[str]:
        """The whole review, a line per change, as `rendergate diff` prints it."""
        def named(image: dict, ref: str | None) -> str:
            return f"{ref} ({image.get('digest')})" if image.get("digest") else f"{ref or ''} (no image)".strip()

        head = [f"{self.variant}: candidate {named(self.candidate, self.candidate.get('ref'))}",
                f"  promoted {named(self.promoted, self.promoted.get('to') or self.promoted.get('ref'))}"
                + (f", {self.promoted['at'][:10]}" if self.promoted.get("at") else ""), self.headline()]
        sections = [("packages", self.packages), ("config", self.config), ("layers", self.layers),
                    ("outcomes", self.outcomes), ("figures", self.figures)]
        body = [f"  {name}: {change.line()}" for name, changes in sections for change in changes]
        if self.size_change is not None:
            body.append(f"  size: {'+' if self.size_change >= 0 else '-'}{_size(abs(self.size_change))}")
        marks = (f"  packages marked [used by the checks]: from {self.used_from}" if self.used_from else
                 f"  no mutation trace of {self.variant} that records the packages the checks use: `rendergate mutate "
                 f"{self.variant}` marks them")
        return [printable(line) for line in [*head, *body, *(f"  not compared: {u}" for u in self.unread),
                                             *(f"  not shown: {h}" for h in self.hidden), marks]]

    def as_json(self) -> dict:
        data = asdict(self)
        data["headline"] = self.headline()
        return data


def _size(n: int | None) -> str:
    if n is None:
        return "size unknown"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}".replace(".0 ", " ")
    return f"{n} B"


def _debian_order(old: str, new: str) -> int:
    from debian.debian_support import Version

    try:
        return (Version(new) > Version(old)) - (Version(new) < Version(old))
    except ValueError:
        return 0


def _python_order(old: str, new: str) -> int:
    from packaging.version import InvalidVersion, Version

    try:
        return (Version(new) > Version(old)) - (Version(new) < Version(old))
    except InvalidVersion:
        return 0


def _changes(kind: str, old: dict[str, str], new: dict[str, str], order, used: set[str]) -> list[PackageChange]:
    found = []
    for name in sorted(old.keys() | new.keys()):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        if before is None or after is None:
            change = "added" if before is None else "removed"
        else:
            change = {1: "upgraded", -1: "downgraded"}.get(order(before, after), "changed")  # 0: versions that do not order
        found.append(PackageChange(kind, name, before, after, change, _normal(name.split(":")[0]) in used))
    return found


def _normal(name: str) -> str:
    """A distribution's name as pip compares them (PEP 503), a Debian package's as it is."""
    return re.sub(r"[-_.]+", "-", name).lower()


def package_changes(old: Contents, new: Contents, used: set[str], debs: bool = True, wheels: bool = True) -> list[PackageChange]:
    """Debian packages by name (and architecture, where either image has several of a name), Python
    distributions by name; `debs`/`wheels` False: that part is not compared (one side could not list it)."""
    several = {name for c in (old, new) for name, n in Counter(p.name for p in c.packages).items() if n > 1}

    def packages(c: Contents) -> dict[str, str]:
        return {(f"{p.name}:{p.arch}" if p.name in several else p.name): p.version for p in c.packages}

    def distributions(c: Contents) -> dict[str, str]:
        return {_normal(d.name): d.version for d in c.distributions}

    shown = {_normal(d.name): d.name for c in (old, new) for d in c.distributions}  # as the image names it
    python = [replace(c, name=shown.get(c.name, c.name))
              for c in _changes("python", distributions(old), distributions(new), _python_order, used)] if wheels else []
    return (_changes("deb", packages(old), packages(new), _debian_order, used) if debs else []) + python


def config_changes(old: Contents, new: Contents) -> list[ConfigChange]:
    a, b = old.config, new.config
    found = []
    for what, before, after in (("base", a.base, b.base), ("base digest", a.base_digest, b.base_digest),
                                ("ENTRYPOINT", sboms.quoted(a.entrypoint), sboms.quoted(b.entrypoint)),
                                ("CMD", sboms.quoted(a.cmd), sboms.quoted(b.cmd)), ("USER", a.user, b.user),
                                ("WORKDIR", a.workdir, b.workdir),
                                ("Python interpreter", old.python or "(not found)", new.python or "(not found)"),
                                ("CUDA runtime", ", ".join(old.cuda_runtime), ", ".join(new.cuda_runtime)),
                                ("NVIDIA driver files baked in", ", ".join(old.driver_files), ", ".join(new.driver_files))):
        part = {"CUDA runtime": "cuda_runtime", "NVIDIA driver files baked in": "driver_files"}.get(what)
        if before != after and not (part and (part in old.unread or part in new.unread)):  # not listed: not compared
            found.append(ConfigChange(what, before or "(none)", after or "(none)"))
    for prefix, before, after in (("ENV", a.env, b.env), ("label", a.labels, b.labels)):
        if prefix == "label":  # the base's labels are said above as the base
            before, after = ({k: v for k, v in d.items() if not k.startswith("org.opencontainers.image.base.")}
                             for d in (before, after))
        for name in sorted(before.keys() | after.keys()):
            if before.get(name) != after.get(name):
                found.append(ConfigChange(f"{prefix} {name}", before.get(name), after.get(name)))
    return found


def layer_changes(old: Contents, new: Contents) -> list[LayerChange]:
    """Layers whose content is in one image only (by digest, as often as it is there more), each
    with the step that made it; one removed and one added made by the same (known) step are that
    step rebuilt, with other content."""
    def only_in(these, others) -> list:
        extra = Counter(layer.digest for layer in these) - Counter(layer.digest for layer in others)
        found = []
        for layer in these:
            if extra[layer.digest]:
                extra[layer.digest] -= 1
                found.append(layer)
        return found

    gone, came = only_in(old.config.layers, new.config.layers), only_in(new.config.layers, old.config.layers)
    found = []
    for layer in came:
        twin = next((g for g in gone if layer.size is not None and g.size is not None and g.created_by == layer.created_by
                     and layer.created_by), None)
        if twin:
            gone.remove(twin)
            found.append(LayerChange("rebuilt", layer.created_by, layer.size, layer.digest, twin.size))
        else:
            found.append(LayerChange("added", layer.created_by, layer.size, layer.digest))
    return [LayerChange("removed", g.created_by, g.size, g.digest) for g in gone] + found


def outcome_changes(old: Verdict, new: Verdict) -> list[OutcomeChange]:
    """Requirements whose outcome changed, then checks (by name and item) whose outcome or cause changed."""
    found = []
    before = requirement_outcomes(judged_checks(old), old.declared)
    after = requirement_outcomes(judged_checks(new), new.declared)
    for name in sorted(before.keys() | after.keys()):
        was, now = (before.get(name) or {}).get("outcome"), (after.get(name) or {}).get("outcome")
        if was != now:
            found.append(OutcomeChange(f"requirement {name}", was, now))

    def checks(v: Verdict) -> dict[str, str]:
        return {(f"{c.check}[{c.item}]" if c.item else c.check): c.outcome + (f" [{c.cause}]" if c.cause else "")
                for c in v.checks if c.outcome not in NOT_COUNTED}

    was, now = checks(old), checks(new)
    found += [OutcomeChange(f"check {name}", was.get(name), now.get(name)) for name in sorted(was.keys() | now.keys())
              if was.get(name) != now.get(name)]
    return found


def _spread(values: list[float]) -> float:
    """The paired speedups' spread, as the speed gate measures a series'."""
    return Series(tuple(values)).spread if values else 0.0


def figure_changes(old: Verdict, new: Verdict) -> tuple[list[FigureChange], list[str]]:
    """Every timed figure of the candidate beside the promoted one (same check, item and figure),
    when both ran on the same GPU type and platform (else they say nothing of each other)."""
    timed = [(c, name, f) for c in new.checks for name, f in c.figures.items() if isinstance(f, dict) and "speedup" in f]
    if not timed and not any("speedup" in f for c in old.checks for f in c.figures.values() if isinstance(f, dict)):
        return [], []
    same_place = (old.host.get("gpu_type") == new.host.get("gpu_type")
                  and (old.platform or Platform.NATIVE) == (new.platform or Platform.NATIVE))
    if not same_place:
        return [], [f"timed figures: the promoted image was timed on {old.host.get('gpu_type')} "
                    f"({old.platform or Platform.NATIVE}), the candidate on {new.host.get('gpu_type')} "
                    f"({new.platform or Platform.NATIVE})"]
    promoted = {((c.check, c.item), name): f for c in old.checks for name, f in c.figures.items()
                if isinstance(f, dict) and "speedup" in f}
    lost = sorted({f"{check}[{item}] {name}" if item else f"{check} {name}" for (check, item), name in promoted}
                  - {f"{c.check}[{c.item}] {name}" if c.item else f"{c.check} {name}" for c, name, _ in timed})
    found, missing = [], []
    for c, name, f in timed:
        was = promoted.get(((c.check, c.item), name))
        label = f"{c.check}[{c.item}]" if c.item else c.check
        if was is None:
            missing.append(f"{label} {name}")
            continue
        found.append(FigureChange(label, name, was["speedup"], f["speedup"], _spread(was.get("paired_speedups", [])),
                                  _spread(f.get("paired_speedups", [])), was["candidate"]["median_s"],
                                  f["candidate"]["median_s"], c.cause == Cause.REGRESSED.value))
    said = [f"timed figures the promoted verdict lacks: {', '.join(missing)}"] if missing else []
    return found, said + ([f"timed figures the candidate's verdict lacks: {', '.join(lost)}"] if lost else [])


def used_packages(mutation_file: Path) -> tuple[set[str], str | None]:
    """The packages and distributions that own files the checks used, as `rendergate mutate`
    recorded them (its JSON); nothing when there is no such run."""
    try:
        data = parse(read_regular(mutation_file, MAX_MUTATION_BYTES))
        owners = {_normal(str(o)) for o in data["used_owners"]}
    except (FileNotFoundError, Unusable, KeyError, TypeError):
        return set(), None
    return owners, f"{mutation_file} (the checks' files traced on {str(data.get('image_id', '?'))[:19]})"


def beside(verdict_file: Path, verdict: Verdict) -> Contents | SbomError:
    """The SBOM kept beside a verdict file, held to the verdict's image; or why there is none."""
    digest = (verdict.image or {}).get("digest")
    if not digest:
        return SbomError(f"{verdict_file}: a verdict about no image (the host, or an image that was never obtained)")
    try:
        return sboms.read(sboms.sbom_path(verdict_file), digest)
    except SbomError as e:
        return e


def review(candidate: Verdict, new: Contents | SbomError, promoted: Verdict, old: Contents | SbomError,
           used: tuple[set[str], str | None] = (set(), None)) -> Review:
    """The review of `candidate` against `promoted`, given what each image is made of (or why that
    is not known) and the packages the checks use (used_packages())."""
    cand_image, prom_image = candidate.image or {}, promoted.image or {}
    found = Review(candidate.variant, {"ref": cand_image.get("ref"), "digest": cand_image.get("digest")},
                   {"ref": prom_image.get("ref"), "digest": prom_image.get("digest"),
                    "to": (promoted.promotion or {}).get("to"), "at": (promoted.promotion or {}).get("at")})
    used, found.used_from = used
    unknown = [str(c) for c in (new, old) if isinstance(c, SbomError)]
    if unknown:
        found.unread.append(f"packages, config and layers: {'; '.join(unknown)}")
    else:
        unread = {part: [f"{part} of the {side} image: {c.unread[part]}" for side, c in (("promoted", old), ("candidate", new))
                         if part in c.unread] for part in ("packages", "python", "cuda_runtime", "driver_files")}
        if old.python != new.python:
            unread["python"].append(f"Python distributions: listed for {old.python or 'no interpreter found'} in the "
                                    f"promoted image, for {new.python or 'no interpreter found'} in the candidate")
        found.packages = package_changes(old, new, used, debs=not unread["packages"], wheels=not unread["python"])
        found.unread += [why for part in unread.values() for why in part]
        if old.config and new.config:
            found.hidden = [f"{kind} {name}: a secret's value, redacted in both images: a change of it cannot show"
                            for kind, before, after in (("ENV", old.config.env, new.config.env),
                                                        ("label", old.config.labels, new.config.labels))
                            for name, value in before.items() if value == REDACTED and after.get(name) == REDACTED]
        if old.config and new.config:
            found.config = config_changes(old, new)
            found.layers = layer_changes(old, new)
            found.size_change = new.config.size - old.config.size
        else:
            found.unread.append(f"config and layers: {old.unread.get('config') or new.unread.get('config')}")
    found.outcomes = outcome_changes(promoted, candidate)
    found.figures, unread = figure_changes(promoted, candidate)
    found.unread += unread
    return found


class Reviewer:
    """The review of each verdict against its variant's promoted one kept in `promoted_dir` (None:
    nothing is reviewed), for pages regenerated while a run goes on: each SBOM and promoted
    verdict is read once (again only when its file changed)."""

    def __init__(self, promoted_dir: Path | None, mutate_dir: Path | None):
        self.promoted_dir, self.mutate_dir = promoted_dir, mutate_dir
        self._read: dict[Path, tuple[tuple, object]] = {}

    def _once(self, path: Path, read):
        try:
            stat = path.stat()
            key = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        except OSError:
            key = None
        if path not in self._read or self._read[path][0] != key:
            self._read[path] = (key, read())
        return self._read[path][1]

    def _promoted(self, variant: str) -> Verdict | None:
        def load():
            try:
                return verdicts.load(self.promoted_dir / f"{variant}.json")
            except verdicts.VerdictError:
                return None
        return self._once(self.promoted_dir / f"{variant}.json", load)

    def __call__(self, verdict: Verdict, verdict_file: Path) -> Review | None:
        promoted = self._promoted(verdict.variant) if self.promoted_dir else None
        if promoted is None or promoted.variant != verdict.variant:  # none kept, or a file of another variant there
            return None
        kept = self.promoted_dir / f"{verdict.variant}.json"
        new = self._once(sboms.sbom_path(verdict_file), lambda: beside(verdict_file, verdict))
        old = self._once(sboms.sbom_path(kept), lambda: beside(kept, promoted))
        mutation = self.mutate_dir / f"{verdict.variant}.json" if self.mutate_dir else None
        used = self._once(mutation, lambda: used_packages(mutation)) if mutation else (set(), None)
        return review(verdict, new, promoted, old, used)
