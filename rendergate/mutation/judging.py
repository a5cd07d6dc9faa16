"""Judging a mutant from its complete verdict against the good image's: detected (a check newly
fails), root-caused strictly (a line names it, with the kind of fault planted, and advises
nothing the image has), or why not."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from rendergate.core import outcomes
from rendergate.core.verdict import CheckResult, Verdict
from rendergate.mutation.operators import FAULT_OF_CAUSE, Mutant


class Finding(str, Enum):
    """What the suites said of one mutant, strictly: a line must name it, say the right kind of
    fault, and advise nothing the image contradicts."""
    ROOT_CAUSED = "root-caused"  # a line names the mutated file (a link to it, its package or wheel) and its kind of fault
    WRONG_KIND = "wrong kind"  # a line names it, but as another kind of fault (missing where it is damaged)
    UNKNOWN_CAUSE = "unknown cause"  # detected; the lines quote an error, claim no kind of fault of it
    OTHER_CAUSE = "another cause"  # detected; a line names a cause that is not it
    WRONG_ADVICE = "wrong advice"  # a line advises to install what the image has: the worst answer
    UNDETECTED = "undetected"  # every check came out as on the good image: triage it
    NOT_BUILT = "not built"  # the defect could not be planted (the RUN itself failed)
    NOT_JUDGED = "not judged"  # the suite run gave no verdict (crashed, timed out)


@dataclass
class Failure:
    check: str
    cause: str | None
    line: str
    names_it: bool = False  # the line names the mutated thing
    fault: str | None = None  # the kind of fault its cause claims (Fault), if any
    contradicted: list[str] = field(default_factory=list)  # what it advises to install that the image has


@dataclass
class MutantResult:
    mutant: Mutant
    finding: Finding
    failures: list[Failure] = field(default_factory=list)  # checks that did not fail on the good image and do here
    note: str = ""  # why it was not built or judged
    seconds: float = 0.0


def failed_checks(verdict: Verdict) -> list[CheckResult]:
    return [c for c in verdict.checks if c.outcome in outcomes.FAULTS]


def _key(check: CheckResult) -> tuple[str, str | None]:
    """A check the same on every image (its test id names the image)."""
    return check.check, check.item


def newly_wrong(baseline: Verdict, verdict: Verdict) -> list[CheckResult]:
    """The checks that did not fail on the good image and do here: failed, or no longer passing
    (skipped, not validated) where they passed."""
    before = {_key(c): c.outcome for c in baseline.checks}
    return [c for c in verdict.checks if before.get(_key(c), outcomes.Outcome.FAILED) not in outcomes.FAULTS
            and (c.outcome in outcomes.FAULTS or (before[_key(c)] == outcomes.Outcome.PASSED and c.outcome not in STILL_FINE))]


# Causes that claim nothing about what is at fault: an unknown cause (its first error quoted), a
# command that did not finish, a workload slower than its threshold or than the promoted image.
CLAIMS_NOTHING = (None, "command-failed", "timeout", "below-threshold", "regressed")

# What a check that passed on the good image may come out as on a mutant without anything being
# wrong: a pass, or a timing too noisy to decide (the host's doing, not the image's).
STILL_FINE = (outcomes.Outcome.PASSED, outcomes.Outcome.UNSUPPORTED, outcomes.Outcome.UNDECIDED, outcomes.Outcome.HOST_BUSY)

# "install P", "pip install P", "apt-get install P", and a package named in parentheses after the
# words ("install its package (driver dummy: xserver-xorg-video-dummy)"); never "reinstall P" nor
# "pip install --force-reinstall P".
ADVISED = re.compile(r"(?<![-\w])install (?!-)(?P<what>[A-Za-z0-9][\w.+-]*)(?:[^:;()]*\((?:[^():]*:\s*)?(?P<named>[a-z0-9][\w.+-]*)\))?")
NOT_A_NAME = {"it", "its", "the", "an", "a", "one", "another", "them"}


def advised_installs(line: str) -> list[str]:
    """The packages or distributions a line advises to install (not in a tool's words it quotes
    after "unknown cause:")."""
    found = []
    for advice in ADVISED.finditer(line.split("unknown cause:", 1)[0]):
        found += [w.rstrip(".,") for w in (advice["what"], advice["named"]) if w and w.rstrip(".,").lower() not in NOT_A_NAME]
    return found


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_of(layers: list[Path]) -> set[str]:
    """The Debian packages (dpkg's status, "install ok installed") and Python distributions (their
    dist-info folders) an image has, read from its layers (normalised names)."""
    names: set[str] = set()
    status = next((layer / "var/lib/dpkg/status" for layer in layers if (layer / "var/lib/dpkg/status").is_file()), None)
    if status is not None:
        for stanza in status.read_text(errors="replace").split("\n\n"):
            package = re.search(r"^Package: (\S+)", stanza, re.M)
            if package and re.search(r"^Status: install ok installed$", stanza, re.M):
                names.add(_normal(package.group(1)))
    for layer in layers:
        names |= {_normal(d.name.split("-")[0]) for d in layer.glob("**/*.dist-info") if d.is_dir()}
    return names


def judge_mutant(mutant: Mutant, baseline: Verdict, verdict: Verdict, installed: set[str]) -> tuple[Finding, list[Failure]]:
    """Detected when a check that did not fail on the good image fails here. Then, strictly: a line
    that advises installing what the image has is wrong advice; a line that names another cause
    misleads (another cause); a line that names the mutant and the right kind of fault root-causes
    it; one that names it as another kind of fault is the wrong kind; else the cause is unknown."""
    failures = []
    for c in newly_wrong(baseline, verdict):
        line = c.message or f"({c.outcome})"
        fault = FAULT_OF_CAUSE.get(c.cause)
        failures.append(Failure(c.check + (f"[{c.item}]" if c.item else ""), c.cause, line,
                                mutant.named_in(line), fault.value if fault else None,
                                [w for w in advised_installs(line) if _normal(w) in installed]))
    if not failures:
        return Finding.UNDETECTED, failures
    if any(f.contradicted for f in failures):
        return Finding.WRONG_ADVICE, failures
    if any(not f.names_it and f.cause not in CLAIMS_NOTHING for f in failures):
        return Finding.OTHER_CAUSE, failures
    right = {fault.value for fault in mutant.kind.faults(mutant.path)}
    if any(f.names_it and f.fault in right for f in failures):
        return Finding.ROOT_CAUSED, failures
    if any(f.names_it and f.fault for f in failures):
        return Finding.WRONG_KIND, failures
    return Finding.UNKNOWN_CAUSE, failures
