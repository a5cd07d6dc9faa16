"""Verdicts: per variant, what a run proved about one image, in a JSON file CI decides from.

A verdict holds the image digest, the host it ran on, every check's outcome and diagnosis, the
workloads' figures, and whether the run finished. It is written when the run starts (partial)
and rewritten as results arrive, so a run that is killed still leaves a partial verdict. A run
fills in a typed Verdict, check by check (CheckResult, with an Outcome); its as_json() is the
file, of schema SCHEMA; a file of another schema is refused in one line saying so.

judge() is the one place that decides a verdict's State: PASSED when every declared requirement
passed on this run; FAILED when a check found a fault; NOT VALIDATED when nothing failed but
something declared could not be proven here (a check skipped for lack of a GPU, a timing
undecided or taken on a busy host, a requirement no check ran for, a run that did not finish).
Only PASSED passes. gate_problems() judges a verdict handed to the gate: against the
variant's *current* manifest (what it declares now must have passed, whatever the verdict says it
declared), about this variant, this very image, this manifest and this rendergate;
promotion_problems() adds that it is recent. load() validates a verdict against its schema
(data/verdict.schema.json) before anything reads it.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import Enum, StrEnum
from functools import lru_cache
from pathlib import Path

import jsonschema

from . import requirements
from .assets import VERDICT_SCHEMA
from .manifest import Variant
from .platforms import Platform

SCHEMA = 1
MAX_VERDICT_BYTES = 64 * 2**20


class State(str, Enum):
    """What a run says of an image, the same words everywhere (terminal, report, verdict, JUnit, gate)."""
    PASSED = "passed"  # every declared requirement proven on this run
    FAILED = "failed"  # some check found a fault
    NOT_VALIDATED = "not-validated"  # nothing failed, but something declared could not be proven here

    @property
    def label(self) -> str:
        return self.value.replace("-", " ").upper()

    @property
    def meaning(self) -> str:
        return {"passed": "every declared requirement was proven on this run",
                "failed": "a check found a fault in the image",
                "not-validated": "nothing failed, but not everything declared could be proven here"}[self.value]

    @property
    def said(self) -> str:
        """The state as every output states it: "NOT VALIDATED: nothing failed, but ..."."""
        return f"{self.label}: {self.meaning}"


class Outcome(StrEnum):
    """What came of a check (and, from its checks, of a requirement): the same word in the
    verdict file, the report and the terminal. Only PASSED passes."""
    PASSED = "passed"
    FAILED = "failed"  # the check found a fault (its diagnosis says which)
    ERROR = "error"  # the check could not run: its setup or teardown failed
    SKIPPED = "skipped"  # skipped for a reason of the check's own
    NO_GPU = "no-gpu"  # no NVIDIA GPU here to prove it with (--allow-no-gpu): not validated
    UNDECIDED = "undecided"  # a timing too noisy to decide
    HOST_BUSY = "host-busy"  # a timing taken while other processes used the host
    UNSUPPORTED = "unsupported"  # not supported by this GPU (a hardware limit, by the capability table)
    NOT_DECLARED = "not-declared"  # the variant does not declare the requirement
    NOT_APPLICABLE = "not-applicable"  # the check is not about this kind of target (containers, on the host)
    NOT_VALIDATED = "not-validated"  # of a requirement: a check of it could not be proven here
    NOT_RUN = "not-run"  # of a requirement: no check of it ran


# Outcomes of a requirement, from its checks' outcomes: the first that any of its checks has,
# wins. UNSUPPORTED (the GPU lacks the feature: a hardware limit) does not fail it.
_REQUIREMENT_OUTCOME = (
    (Outcome.FAILED, Outcome.FAILED), (Outcome.ERROR, Outcome.FAILED), (Outcome.NO_GPU, Outcome.NOT_VALIDATED),
    (Outcome.HOST_BUSY, Outcome.UNDECIDED), (Outcome.UNDECIDED, Outcome.UNDECIDED), (Outcome.SKIPPED, Outcome.SKIPPED),
    (Outcome.UNSUPPORTED, Outcome.UNSUPPORTED))
NOT_A_PROBLEM = (Outcome.PASSED, Outcome.UNSUPPORTED)
FAULTS = (Outcome.FAILED, Outcome.ERROR)
# Checks that do not apply to this variant: neither a pass nor a problem.
NOT_COUNTED = (Outcome.NOT_DECLARED, Outcome.NOT_APPLICABLE)
@dataclass(frozen=True)
class Unproven:
    """Why something declared was not validated: in a few words, and what to do about it."""
    reason: str
    action: str
    own_words: bool = False  # each check's message says it better (a timing's figures): not grouped


# By the outcome of the checks (or of the run).
NOT_VALIDATED_BECAUSE = {
    Outcome.NO_GPU: Unproven("no NVIDIA GPU on this host", "run it on a GPU host (--allow-no-gpu skips are not passes)"),
    Outcome.HOST_BUSY: Unproven("host busy", "rerun on a quiet machine", own_words=True),
    Outcome.UNDECIDED: Unproven("timing undecided: too noisy to decide", "rerun on a quiet machine", own_words=True),
    Outcome.SKIPPED: Unproven("skipped", "see the check's reason", own_words=True),
    Outcome.NOT_RUN: Unproven("no check of it ran (deselected, or the run stopped first)", "run every suite on it"),
    "partial": Unproven("the run did not finish (interrupted or crashed): this verdict is PARTIAL", "run it again to the end"),
    "nothing-declared": Unproven("it declares no requirement: the run proved nothing",
                                 "declare what the image must do in its manifest"),
}
FIX_THE_IMAGE = "fix the image (each failure names its cause)"


@dataclass(frozen=True)
class Problem:
    """Why a verdict does not pass, about one requirement (or check, or the run as a whole)."""
    state: State  # FAILED or NOT_VALIDATED
    subject: str
    reason: str  # a few words that several problems can share: "no NVIDIA GPU on this host"
    action: str  # what a person does about it
    detail: str = ""  # the checks' own lines
    checks: int = 1
    grouped: bool = True  # summed up with the problems of the same reason, or said in its own words

    def line(self) -> str:
        if self.state is State.FAILED and self.detail:
            return f"{self.subject}: FAILED: {self.detail}"
        return f"{self.subject}: {self.state.label}: {self.reason}" + (f" ({self.detail})" if self.detail else "")


def not_validated(subject: str, why: str, detail: str = "", checks: int = 1) -> Problem:
    unproven = NOT_VALIDATED_BECAUSE[why]
    return Problem(State.NOT_VALIDATED, subject, unproven.reason, unproven.action, detail, checks,
                   grouped=not (unproven.own_words and detail))


def state_of(problems: list[Problem]) -> State:
    if any(p.state is State.FAILED for p in problems):
        return State.FAILED
    return State.NOT_VALIDATED if problems else State.PASSED


def summary(problems: list[Problem]) -> list[str]:
    """A few lines a person acts on: each failure, then what was not validated, grouped by why
    ("8 checks of gpu, nvenc: no NVIDIA GPU on this host: run it on a GPU host"), or in the
    checks' own words where they say more (a timing's figures)."""
    lines = [f"FAILED {p.subject}: {p.detail or p.reason}" for p in problems if p.state is State.FAILED]
    groups: dict[tuple[str, str, str], list[Problem]] = {}
    for p in problems:
        if p.state is State.NOT_VALIDATED:
            key = (p.reason, p.action, "" if p.grouped else p.subject)
            groups.setdefault(key, []).append(p)
    for (reason, action, _), group in groups.items():
        checks = sum(p.checks for p in group)
        subjects = ", ".join(p.subject for p in group)
        counted = f"{checks} check{'s' * (checks != 1)} of {subjects}" if checks else subjects
        why = reason if group[0].grouped else group[0].detail
        lines.append(f"not validated: {counted}: {why}" + ("" if why.endswith(action) else f": {action}"))
    return lines


class VerdictError(Exception):
    """A verdict file that cannot be used; the message names the file."""


def manifest_digest(variant: Variant) -> str:
    return "sha256:" + hashlib.sha256(variant.manifest.read_bytes()).hexdigest()


def declared_requirements(variant: Variant) -> list[str]:
    """The manifest keys a run must prove: requirements, then workloads."""
    qualifiers = requirements.qualifiers()
    return [key for key in variant.declared_keys() if key not in qualifiers]


@dataclass
class CheckResult:
    """A check's entry in a verdict (the schema's `check`)."""
    nodeid: str
    check: str
    requirement: str  # "" for a check of no requirement (a user's own, say)
    item: str | None = None
    outcome: Outcome = Outcome.PASSED
    cause: str | None = None
    message: str = ""
    figures: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        return {"nodeid": self.nodeid, "anchor": self.nodeid, "check": self.check, "requirement": self.requirement,
                "item": self.item, "outcome": Outcome(self.outcome).value, "cause": self.cause,
                "message": self.message, "figures": self.figures}


@dataclass
class Verdict:
    """A verdict as a run finds it out, check by check; as_json() is the file (schema SCHEMA),
    with its requirements, problems, state and summary judged from the checks."""
    variant: str
    run_id: str
    target: str
    manifest: str
    declared: list[str]
    host: dict
    options: dict
    image: dict | None = None
    platform: Platform | None = None  # the target's kernel, as probed
    complete: bool = False
    finished: str | None = None
    containers_started: int = 0
    checks: list[CheckResult] = field(default_factory=list)
    sandboxes: list[dict] = field(default_factory=list)  # the Modal sandboxes it ran in: gpu_type, start time
    gpu_seconds: int | None = None

    @classmethod
    def start(cls, variant: Variant, run_id: str, target: str, host: dict, options: dict) -> "Verdict":
        return cls(variant.name, run_id, target, manifest_digest(variant), declared_requirements(variant), host, options)

    def check(self, nodeid: str, check: str, requirement: str, item: str | None) -> CheckResult:
        """The check's entry, added when it is new."""
        entry = next((c for c in self.checks if c.nodeid == nodeid), None)
        if entry is None:
            entry = CheckResult(nodeid, check, requirement, item)
            self.checks.append(entry)
        return entry

    def as_json(self) -> dict:
        data = {"schema": SCHEMA, "variant": self.variant, "run_id": self.run_id, "target": self.target,
                "image": self.image, "manifest": self.manifest, "declared": self.declared, "host": self.host,
                "options": self.options, "complete": self.complete, "finished": self.finished,
                "containers_started": self.containers_started, "checks": [c.as_json() for c in self.checks]}
        data |= {"platform": self.platform} if self.platform else {}
        data |= {"sandboxes": self.sandboxes} if self.sandboxes else {}
        data |= {"gpu_seconds": self.gpu_seconds} if self.gpu_seconds is not None else {}
        return settle(data)


def requirement_outcomes(checks: list[dict], declared: list[str]) -> dict[str, dict]:
    """Each declared requirement's outcome, from the outcomes of the checks of it that ran."""
    found = {}
    for name in declared:
        ran = [c for c in checks if c["requirement"] == name and c["outcome"] not in NOT_COUNTED]
        outcomes = {c["outcome"] for c in ran}
        outcome = next((req for check, req in _REQUIREMENT_OUTCOME if check in outcomes),
                       Outcome.PASSED if ran else Outcome.NOT_RUN)
        found[name] = {"outcome": outcome.value, "checks": len(ran)}
    return found


def settle(verdict: dict) -> dict:
    """The verdict with its requirement outcomes, problems, state and summary judged from its checks."""
    problems = judge(verdict)
    return {**verdict, "requirements": requirement_outcomes(verdict["checks"], verdict["declared"]),
            "problems": [p.line() for p in problems], "state": state_of(problems).value, "summary": summary(problems)}


def judge(verdict: dict, declared: list[str] | None = None) -> list[Problem]:
    """Why this verdict does not pass; empty when every declared requirement passed on a run that
    finished. `declared` (default: what the verdict says its manifest declared) is re-derived from
    the checks, never taken from the verdict's own summary. A requirement with a failed check is
    FAILED; one whose checks could not prove it (no GPU, busy host, undecided timing, none ran)
    is NOT VALIDATED, once per reason."""
    declared = verdict["declared"] if declared is None else declared
    problems = [] if verdict["complete"] else [not_validated("the run", "partial", checks=0)]
    if not declared:
        problems.append(not_validated(verdict["variant"], "nothing-declared", checks=0))
    for name, req in requirement_outcomes(verdict["checks"], declared).items():
        if req["outcome"] in NOT_A_PROBLEM:
            continue
        mine = [c for c in verdict["checks"] if c["requirement"] == name and c["outcome"] not in NOT_COUNTED]
        if req["outcome"] == Outcome.FAILED:
            failing = [c for c in mine if c["outcome"] in FAULTS]
            problems.append(Problem(State.FAILED, name, "failed", FIX_THE_IMAGE, _details(failing), len(failing)))
            continue
        if not mine:
            problems.append(not_validated(name, Outcome.NOT_RUN, checks=0))
        for why in NOT_VALIDATED_BECAUSE:
            unproven = [c for c in mine if c["outcome"] == why]
            if unproven:
                problems.append(not_validated(name, why, _details(unproven), len(unproven)))
    for c in verdict["checks"]:  # checks no requirement names (a user's own check, say) must pass too
        if c["requirement"] not in declared and c["outcome"] in FAULTS:
            problems.append(Problem(State.FAILED, c["check"], "failed", FIX_THE_IMAGE, c["message"]))
    return problems


def _details(checks: list[dict]) -> str:
    """The checks' lines, each message once: "check_a, check_b[x]: the message"."""
    by_message: dict[str, list[str]] = {}
    for c in checks:
        if c["message"]:
            by_message.setdefault(c["message"], []).append(c["check"] + (f"[{c['item']}]" if c["item"] else ""))
    return "; ".join(f"{', '.join(names)}: {message}" for message, names in by_message.items())


def image_mismatch(verdict: dict, image_digest: str) -> str | None:
    """Why the verdict is not about the image with this digest, or None when it is."""
    tested = (verdict.get("image") or {}).get("digest")
    if tested == image_digest:
        return None
    return f"mismatched: the verdict is about image {tested or 'none'}, the candidate is {image_digest}"


def gate_problems(verdict: dict, variant: Variant, image_digest: str | None, suite_version: str,
                  gpu_type: str | None = None) -> list[Problem]:
    """Why `verdict` does not prove `variant` (its current manifest) for the image with
    `image_digest` (None: no image, the host) on this rendergate; on `gpu_type` for a matrix cell."""
    if verdict["variant"] != variant.name:
        return [_stale(f"it is about variant {verdict['variant']}, not {variant.name}", "run the gate on this variant")]
    if gpu_type and verdict["host"]["gpu_type"] != gpu_type:
        return [_stale(f"it is about {verdict['host']['gpu_type']}, not the cell's GPU type {gpu_type}",
                       "run the matrix again")]
    problems = judge(verdict, declared_requirements(variant))
    if image_digest:
        mismatch = image_mismatch(verdict, image_digest)
        if mismatch:
            problems.append(_stale(mismatch, "run the gate on this image"))
    if verdict["manifest"] != manifest_digest(variant):
        problems.append(_stale(f"stale: {variant.manifest} changed since the verdict", "run the gate again"))
    if verdict["host"]["suite_version"] != suite_version:
        problems.append(_stale(f"stale: the verdict was made by rendergate {verdict['host']['suite_version']}, "
                               f"this is {suite_version}", "run the gate again"))
    return problems


def _stale(reason: str, action: str) -> Problem:
    """The verdict, whatever it says, is not about what is being gated: nothing of it is validated."""
    return Problem(State.NOT_VALIDATED, "the verdict", reason, action, checks=0)


def promotion_problems(verdict: dict, variant: Variant, image_digest: str, suite_version: str, max_age: timedelta,
                       now: datetime | None = None) -> list[Problem]:
    """Why `verdict` does not allow promoting the image with `image_digest` as `variant`."""
    problems = gate_problems(verdict, variant, image_digest, suite_version)
    if verdict["variant"] != variant.name:
        return problems
    finished = verdict["finished"]
    age = (now or datetime.now(timezone.utc)) - datetime.fromisoformat(finished) if finished else None
    if age is not None and age > max_age:
        problems.append(_stale(f"stale: the verdict is {_span(age)} old, more than the {_span(max_age)} allowed",
                               "run the gate again"))
    return problems


def _span(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


def platform_differences(verdicts: list[dict]) -> list[str]:
    """Checks that fail under gVisor but pass on a native kernel, for the same variant, GPU type
    and image: the platform's doing, not the image's (run a variant under both, `--runtime`, and
    merge the two verdicts to see it)."""
    lines = []
    native = {(v["variant"], v["host"].get("gpu_type"), (v.get("image") or {}).get("digest")): v
              for v in verdicts if v.get("platform", Platform.NATIVE) == Platform.NATIVE}
    for sandboxed in (v for v in verdicts if v.get("platform") == Platform.GVISOR):
        key = (sandboxed["variant"], sandboxed["host"].get("gpu_type"), (sandboxed.get("image") or {}).get("digest"))
        control = native.get(key)
        if not control:
            continue
        passed = {(c["check"], c["item"]) for c in control["checks"] if c["outcome"] == Outcome.PASSED}
        for c in sandboxed["checks"]:
            if c["outcome"] in FAULTS and (c["check"], c["item"]) in passed:
                name = f"{c['check']}[{c['item']}]" if c["item"] else c["check"]
                lines.append(f"{key[0]} on {key[1]}: {name} fails only under gVisor ({c['message']}); with the same "
                             "image on a native kernel it passes: the platform, not the image [platform]")
    return lines


def gpu_seconds(verdicts: list[dict]) -> dict[str, int]:
    """GPU-seconds used per GPU type, from the verdicts of a Modal GPU matrix."""
    used: dict[str, int] = {}
    for v in verdicts:
        if v.get("gpu_seconds"):
            used[v["host"]["gpu_type"]] = used.get(v["host"]["gpu_type"], 0) + v["gpu_seconds"]
    return used


def write(path: Path, verdict: dict) -> None:
    """Write atomically: a reader never sees half a verdict."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(verdict, f, indent=1)
    os.replace(tmp, path)


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number a verdict may hold")


@lru_cache(maxsize=1)
def _validator():
    return jsonschema.Draft202012Validator(json.loads(VERDICT_SCHEMA.read_text()))


def load(path: Path) -> dict:
    """A verdict file, validated against its schema; VerdictError, one line naming the file, otherwise."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise VerdictError(f"{path}: not a verdict file (a folder, a pipe or a device)")
        if info.st_size > MAX_VERDICT_BYTES:
            raise VerdictError(f"{path}: {info.st_size} bytes: too big for a verdict")
        data = json.loads(path.read_bytes().decode("utf-8"), parse_constant=_no_constant)
    except FileNotFoundError:
        raise VerdictError(f"{path}: no verdict (no run of the suites wrote one)") from None
    except (OSError, ValueError, RecursionError) as e:
        raise VerdictError(f"{path}: not a readable verdict ({type(e).__name__}: {str(e)[:200]})") from None
    return checked(data, str(path))


def checked(data, where: str) -> dict:
    """`data` once it is a verdict by its schema; VerdictError naming `where` otherwise."""
    if isinstance(data, dict) and type(data.get("schema")) is int and data["schema"] != SCHEMA:
        raise VerdictError(f"{where}: a verdict of schema {data['schema']}, written by another rendergate: this one "
                           f"reads schema {SCHEMA} (run the suites again with it)")
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise VerdictError(f"{where}: not a rendergate verdict (schema {SCHEMA})")
    error = jsonschema.exceptions.best_match(_validator().iter_errors(data))
    if error is not None:
        at = error.json_path.removeprefix("$") or "the top"
        raise VerdictError(f"{where}: not a valid rendergate verdict: at {at}: {error.message[:200]}")
    return data


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
