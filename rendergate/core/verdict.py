"""Verdicts: per variant, what a run proved about one image, in a JSON file CI decides from.

A verdict holds the image digest, the host it ran on, every check's outcome and diagnosis, the
workloads' figures, and whether the run finished. It is written when the run starts (partial)
and rewritten as results arrive, so a run that is killed still leaves a partial verdict. A run
fills in a typed Verdict, check by check (CheckResult, with an Outcome); its as_json() is the
file, of schema SCHEMA; a file of another schema is refused in one line saying so.

judge() is the one place that decides a verdict's State: PASSED when every declared requirement
passed on this run, every check run it implies there (requirements.expected_checks, and what
pytest collected); FAILED when a check found a fault; NOT VALIDATED when nothing failed but
something declared could not be proven here (a check skipped for lack of a GPU, a timing
undecided or taken on a busy host, a check that did not run, a run trimmed with -k or the like,
a run that did not finish).
Only PASSED passes. gate_problems() judges a verdict handed to the gate: against the
variant's *current* manifest (what it declares now must have passed, whatever the verdict says it
declared), about this variant, this very image, this manifest and this rendergate;
promotion_problems() adds that it is recent. load() validates a verdict against its schema
(data/verdict.schema.json) before anything reads it.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from enum import Enum, StrEnum
from functools import lru_cache
from pathlib import Path

import jsonschema

from rendergate.core import requirements
from rendergate.core.assets import VERDICT_SCHEMA
from rendergate.core.environment import described_gpus
from rendergate.core.jsonfile import Unusable, depth_within, parse, read_regular, write_whole
from rendergate.core.manifest import Variant
from rendergate.core.platforms import Platform
from rendergate.core.redact import printable

SCHEMA = 1
MAX_VERDICT_BYTES = 64 * 2**20
# Bounds on what a run writes, well inside the schema's, so that no run can write a verdict its own
# schema refuses (a check printing a megabyte, a thousand failures under one requirement).
MESSAGE_CHARS = 2000  # a check's one-line message
DETAIL_CHARS = 4000  # a problem's list of checks and messages
SUMMARY_LINES = 50
CLOCK_SKEW = timedelta(minutes=5)  # a verdict finished later than now by more than this was not finished yet


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
    NOT_RUN = "not-run"  # of a requirement: no check of it ran; of a check: it was set up, never called


# A check said "not supported by this GPU" where the gate does not accept it (the requirement names
# no GPU feature, the manifest must have it, or the capability table says the GPU has it): judged
# as such, never written as a check's outcome.
UNSUPPORTED_REFUSED = "unsupported-refused"
# Outcomes of a requirement, from its checks' outcomes: the first that any of its checks has,
# wins. UNSUPPORTED (the GPU lacks the feature: a hardware limit) does not fail it.
_REQUIREMENT_OUTCOME = (
    (Outcome.FAILED, Outcome.FAILED), (Outcome.ERROR, Outcome.FAILED), (Outcome.NO_GPU, Outcome.NOT_VALIDATED),
    (UNSUPPORTED_REFUSED, Outcome.NOT_VALIDATED),
    (Outcome.HOST_BUSY, Outcome.UNDECIDED), (Outcome.UNDECIDED, Outcome.UNDECIDED), (Outcome.SKIPPED, Outcome.SKIPPED),
    (Outcome.UNSUPPORTED, Outcome.UNSUPPORTED))
NOT_A_PROBLEM = (Outcome.PASSED, Outcome.UNSUPPORTED)
FAULTS = (Outcome.FAILED, Outcome.ERROR)
# Checks that do not apply to this variant: neither a pass nor a problem.
NOT_COUNTED = (Outcome.NOT_DECLARED, Outcome.NOT_APPLICABLE)
# Checks that did not run, on top: set up but never called (--setup-only) runs nothing.
DID_NOT_RUN = (*NOT_COUNTED, Outcome.NOT_RUN)
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
    UNSUPPORTED_REFUSED: Unproven("said not supported by this GPU, which is not accepted here",
                                  "run it on a GPU that has the feature", own_words=True),
    Outcome.NOT_RUN: Unproven("no check of it ran (deselected, or the run stopped first)", "run every suite on it"),
    "missing": Unproven("checks the manifest implies did not run",
                        "run every check: no -k, -m, --deselect, --lf or node ids", own_words=True),
    "uncollected": Unproven("a module of checks failed to collect", "fix it, then run every check", own_words=True),
    "trimmed": Unproven("the run was trimmed", "run every check: no -k, -m, --deselect, --lf or node ids", own_words=True),
    "partial": Unproven("the run did not finish (interrupted or crashed): this verdict is PARTIAL", "run it again to the end"),
    "nothing-declared": Unproven("it declares no requirement: the run proved nothing",
                                 "declare what the image must do in its manifest"),
}
FIX_THE_IMAGE = "fix the image (each failure names its cause)"


@dataclass
class Selection:
    """What pytest was asked to run, as a verdict records it: everything that makes a run hold
    fewer checks than its manifest implies, so that a check that did not run is said why."""
    named: list[str] = field(default_factory=list)  # files or node ids of checks named on the command line
    keyword: str = ""  # -k
    markexpr: str = ""  # -m
    deselect: list[str] = field(default_factory=list)  # --deselect
    ignore: list[str] = field(default_factory=list)  # --ignore, --ignore-glob
    last_failed: bool = False  # --lf
    stepwise: bool = False  # --sw
    maxfail: int = 0  # -x, --maxfail
    collection_errors: list[str] = field(default_factory=list)  # "path: the error", one line each
    stopped: str = ""  # why the session stopped before its end, as pytest says
    dry_run: str = ""  # an option that runs no check: --collect-only, --setup-only, --setup-plan, --fixtures
    overrides: list[str] = field(default_factory=list)  # -o of what pytest collects (python_files, norecursedirs, ...)
    collecting: list[str] = field(default_factory=list)  # the same keys as the run's ini file sets them (not a trim)
    ini: str = ""  # that ini file (-c, or the one pytest found)

    @classmethod
    def of(cls, verdict: dict) -> "Selection":
        return cls(**verdict.get("selection", {}))

    def trims(self) -> list[str]:
        """The options that left checks out, as typed: "-k 'not glx_answers'"."""
        found = [f"-k {self.keyword!r}"] if self.keyword else []
        found += [f"-m {self.markexpr!r}"] if self.markexpr else []
        found += [f"--deselect {', '.join(self.deselect)}"] if self.deselect else []
        found += [f"--ignore {', '.join(self.ignore)}"] if self.ignore else []
        found += ["--lf"] if self.last_failed else []
        found += ["--sw"] if self.stepwise else []
        found += [self.dry_run] if self.dry_run else []
        found += [f"-o {', '.join(self.overrides)}"] if self.overrides else []
        return found

    def why_missing(self, complete: bool) -> str:
        """Why expected checks are absent from the run, as far as the run knows."""
        deselecting = [t for t in self.trims() if t != self.dry_run]
        reasons = [f"deselected with {'; '.join(deselecting)}"] if deselecting else []
        reasons += [f"the run called no check ({self.dry_run})"] if self.dry_run else []
        reasons += [f"the run named only {', '.join(self.named)}"] if self.named else []
        reasons += [f"{len(self.collection_errors)} module{'s' * (len(self.collection_errors) != 1)} of checks failed "
                    "to collect"] if self.collection_errors else []
        reasons += [f"the run stopped early: {self.stopped}"] if self.stopped else []
        reasons += [] if complete else ["the run did not finish"]
        if self.collecting and not reasons:  # a repo's own ini may hide a folder of checks as well as -o does
            reasons.append(f"not collected under {self.ini or 'the ini file'}'s {', '.join(self.collecting)}")
        return printable("; ".join(reasons) or "never ran: a worker crashed, or a plugin left them out")

    def as_json(self) -> dict:
        return {k: _bounded(v, 1024) if isinstance(v, str) else [_bounded(x, 1024) for x in v[:64]] if isinstance(v, list)
                else v for k, v in asdict(self).items()}


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
    shown = [printable(_bounded(line, DETAIL_CHARS * 2)) for line in lines[:SUMMARY_LINES]]
    return shown + ([f"... and {len(lines) - SUMMARY_LINES} more problems (the verdict's `problems`)"]
                    if len(lines) > SUMMARY_LINES else [])


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
    outcome: Outcome = Outcome.NOT_RUN  # until its call ran: set up and torn down alone (--setup-only) proves nothing
    cause: str | None = None
    message: str = ""
    figures: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        return {"nodeid": self.nodeid, "anchor": self.nodeid, "check": self.check, "requirement": self.requirement,
                "item": self.item, "outcome": Outcome(self.outcome).value, "cause": self.cause,
                "message": _bounded(self.message, MESSAGE_CHARS), "figures": self.figures}


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
    expected: dict = field(default_factory=dict)  # (requirement, check, item) -> runs: what a complete run holds
    selection: Selection = field(default_factory=Selection)
    checks_code: str = ""  # the digest of the run's folders of checks (requirements.checks_digest)

    @classmethod
    def start(cls, variant: Variant, run_id: str, target: str, host: dict, options: dict,
              selection: Selection | None = None) -> "Verdict":
        return cls(variant.name, run_id, target, manifest_digest(variant), declared_requirements(variant), host, options,
                   expected=requirements.expected_checks(variant), selection=selection or Selection(),
                   checks_code=requirements.checks_digest())

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
                "containers_started": self.containers_started, "checks": [c.as_json() for c in self.checks],
                "expected": [{"requirement": r, "check": c, "item": i, "runs": n} for (r, c, i), n in self.expected.items()],
                "selection": self.selection.as_json(), "checks_code": self.checks_code}
        data |= {"platform": self.platform} if self.platform else {}
        data |= {"sandboxes": self.sandboxes} if self.sandboxes else {}
        data |= {"gpu_seconds": self.gpu_seconds} if self.gpu_seconds is not None else {}
        return settle(data)


def requirement_outcomes(checks: list[dict], declared: list[str]) -> dict[str, dict]:
    """Each declared requirement's outcome, from the outcomes of the checks of it that ran."""
    found = {}
    for name in declared:
        ran = [c for c in checks if c["requirement"] == name and c["outcome"] not in DID_NOT_RUN]
        outcomes = {c["outcome"] for c in ran}
        outcome = next((req for check, req in _REQUIREMENT_OUTCOME if check in outcomes),
                       Outcome.PASSED if ran else Outcome.NOT_RUN)
        found[name] = {"outcome": outcome.value, "checks": len(ran)}
    return found


def settle(verdict: dict) -> dict:
    """The verdict with its requirement outcomes, problems, state and summary judged from its checks."""
    problems = judge(verdict)
    return {**verdict, "requirements": requirement_outcomes(judged_checks(verdict), verdict["declared"]),
            "problems": [_bounded(p.line(), DETAIL_CHARS * 2) for p in problems], "state": state_of(problems).value,
            "summary": summary(problems)}


def unsupported_refused(check: dict, host: dict, must_have: list[str]) -> str | None:
    """Why a check's "not supported by this GPU" is not accepted, or None when it is: only for a
    requirement whose GPU feature (NVENC, OptiX) the verdict's GPUs lack by the capability table,
    and that the manifest does not list in gpu_must_have."""
    requirement = requirements.get(check["requirement"])
    feature = requirement.gpu_feature if requirement else None
    if feature is None:
        return f"'{check['requirement'] or check['check']}' names no GPU feature a GPU may lack"
    if feature.name in must_have:
        return f"the manifest must have {feature.name} on every host (requirements.gpu_must_have)"
    gpus = described_gpus(host)
    able = [g.name for g in gpus if not feature.lacking(g, check["item"])]
    if not gpus or able:
        return (f"{', '.join(able)} {'has' if len(able) == 1 else 'have'} {feature.name} by the capability table" if able
                else f"the verdict names no GPU that lacks {feature.name}")
    return None


def judged_checks(verdict: dict, must_have: list[str] | None = None) -> list[dict]:
    """The verdict's checks as the judge counts them: a "not supported by this GPU" it does not
    accept stands as UNSUPPORTED_REFUSED, with why."""
    judged = []
    for c in verdict["checks"]:
        why = unsupported_refused(c, verdict["host"], must_have or []) if c["outcome"] == Outcome.UNSUPPORTED else None
        judged.append({**c, "outcome": UNSUPPORTED_REFUSED, "message": f"{c['message']} (not accepted: {why})"} if why else c)
    return judged


def expected_of(verdict: dict) -> dict[tuple[str, str, str | None], int]:
    """The (requirement, check, item) runs the verdict's run expected of itself, when it started."""
    return {(e["requirement"], e["check"], e["item"]): e["runs"] for e in verdict.get("expected", [])}


def judge(verdict: dict, declared: list[str] | None = None,
          expected: dict[tuple[str, str, str | None], int] | None = None, must_have: list[str] | None = None) -> list[Problem]:
    """Why this verdict does not pass; empty when every declared requirement passed on a run that
    finished and held every check the manifest implies. `declared` and `expected` (default: what
    the verdict says its run declared and expected) are what the gate re-derives from the current
    manifest; `must_have` its requirements.gpu_must_have. A requirement with a failed check is
    FAILED; one whose checks could not prove it (no GPU, busy host, undecided timing, a check that
    did not run) is NOT VALIDATED, once per reason."""
    declared = verdict["declared"] if declared is None else declared
    expected = expected_of(verdict) if expected is None else expected
    selection = Selection.of(verdict)
    checks = judged_checks(verdict, must_have)
    problems = [] if verdict["complete"] else [not_validated("the run", "partial", checks=0)]
    if verdict["complete"] and not verdict["finished"]:
        problems.append(_stale("the verdict says it is complete but names no time it finished", "run it again"))
    problems += [not_validated(printable(error.split(": ", 1)[0]), "uncollected", printable(f"{error}: its checks did not run"),
                                checks=0) for error in selection.collection_errors]
    if not declared:
        problems.append(not_validated(verdict["variant"], "nothing-declared", checks=0))
    missing = _missing(checks, expected)
    trims = selection.trims() + ([f"only {', '.join(selection.named)}"] if selection.named else [])
    if trims and not missing:  # what the manifest implies all ran, but a trimmed run is never the evidence
        problems.append(not_validated("the run", "trimmed", f"it was trimmed with {'; '.join(trims)}", checks=0))
    for name, req in requirement_outcomes(checks, declared).items():
        mine = [c for c in checks if c["requirement"] == name and c["outcome"] not in DID_NOT_RUN]
        if req["outcome"] == Outcome.FAILED:
            failing = [c for c in mine if c["outcome"] in FAULTS]
            problems.append(Problem(State.FAILED, name, "failed", FIX_THE_IMAGE, _details(failing), len(failing)))
            continue
        if missing.get(name):
            absent = missing[name]
            runs = sum(n for _, n in absent)
            problems.append(not_validated(name, "missing", _bounded(
                f"{', '.join(_named(check, item) for (check, item), _ in absent)} did not run "
                f"({selection.why_missing(verdict['complete'])})", DETAIL_CHARS), checks=runs))
        elif not mine:
            problems.append(not_validated(name, Outcome.NOT_RUN, checks=0))
        if req["outcome"] in NOT_A_PROBLEM:
            continue
        for why in NOT_VALIDATED_BECAUSE:
            unproven = [c for c in mine if c["outcome"] == why]
            if unproven:
                problems.append(not_validated(name, why, _details(unproven), len(unproven)))
    for c in checks:  # checks no requirement names (a user's own check, say) must pass too
        if c["requirement"] not in declared and c["outcome"] in FAULTS:
            problems.append(Problem(State.FAILED, c["check"], "failed", FIX_THE_IMAGE,
                                    _bounded(printable(c["message"]), MESSAGE_CHARS)))
    return problems


def _missing(checks: list[dict], expected: dict) -> dict[str, list[tuple[tuple[str, str | None], int]]]:
    """By requirement, the expected (check, item) runs that are not among the checks that ran
    (each run is a node id of its own): with how many runs are missing."""
    ran: dict[tuple[str, str, str | None], set[str]] = {}
    for c in checks:
        if c["outcome"] not in DID_NOT_RUN:
            for item in {c["item"], None}:  # a check expected with no item is also run per item (through a fixture)
                ran.setdefault((c["requirement"], c["check"], item), set()).add(c["nodeid"])
    missing: dict[str, list] = {}
    for (requirement, check, item), runs in sorted(expected.items(), key=lambda e: (e[0][0], e[0][1], e[0][2] or "")):
        absent = runs - len(ran.get((requirement, check, item), ()))
        if absent > 0:
            missing.setdefault(requirement, []).append(((check, item), absent))
    return missing


def _named(check: str, item: str | None) -> str:
    return printable(check + (f"[{item}]" if item else ""))


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 12] + " [... cut]"


def _details(checks: list[dict]) -> str:
    """The checks' lines, each message once: "check_a, check_b[x]: the message"."""
    by_message: dict[str, list[str]] = {}
    for c in checks:
        message = _bounded(printable(c["message"]), MESSAGE_CHARS) or f"{c['outcome']}, with no message"
        by_message.setdefault(message, []).append(_named(c["check"], c["item"]))
    return _bounded("; ".join(f"{', '.join(names)}: {message}" for message, names in by_message.items()), DETAIL_CHARS)


def image_mismatch(verdict: dict, image_digest: str) -> str | None:
    """Why the verdict is not about the image with this digest, or None when it is."""
    tested = (verdict.get("image") or {}).get("digest")
    if tested == image_digest:
        return None
    return f"mismatched: the verdict is about image {tested or 'none'}, the candidate is {image_digest}"


def gate_problems(verdict: dict, variant: Variant, image_digest: str | None, suite_version: str,
                  gpu_type: str | None = None, now: datetime | None = None) -> list[Problem]:
    """Why `verdict` does not prove `variant` (its current manifest) for the image with
    `image_digest` (None: no image, the host) on this rendergate; on `gpu_type` for a matrix cell.
    What must have run is re-derived: the requirements the manifest declares and every check they
    imply (requirements.expected_checks), besides whatever the verdict says its run expected."""
    if verdict["variant"] != variant.name:
        return [_stale(f"it is about variant {verdict['variant']}, not {variant.name}", "run the gate on this variant")]
    if gpu_type and verdict["host"]["gpu_type"] != gpu_type:
        return [_stale(f"it is about {verdict['host']['gpu_type']}, not the cell's GPU type {gpu_type}",
                       "run the matrix again")]
    expected = {**expected_of(verdict)}
    for key, runs in requirements.expected_checks(variant).items():
        expected[key] = max(runs, expected.get(key, 0))
    problems = judge(verdict, declared_requirements(variant), expected, variant.requirements.get("gpu_must_have", []))
    if image_digest:
        mismatch = image_mismatch(verdict, image_digest)
        if mismatch:
            problems.append(_stale(mismatch, "run the gate on this image"))
    if verdict["manifest"] != manifest_digest(variant):
        problems.append(_stale(f"stale: {variant.manifest} changed since the verdict", "run the gate again"))
    if verdict.get("checks_code") != requirements.checks_digest():
        problems.append(_stale("stale: the run's folders of checks are not the ones given here (their code changed "
                               "since, or the run had other --checks)", "run the gate again, with the run's --checks"))
    if verdict["host"]["suite_version"] != suite_version:
        problems.append(_stale(f"stale: the verdict was made by rendergate {verdict['host']['suite_version']}, "
                               f"this is {suite_version}", "run the gate again"))
    finished = parse_time(verdict["finished"]) if verdict["finished"] else None
    if finished and finished > (now or datetime.now(timezone.utc)) + CLOCK_SKEW:
        problems.append(_stale(f"it says it finished at {verdict['finished']}, in the future (a clock that is wrong, "
                               "or an edited verdict)", "run the gate again"))
    return problems


def _stale(reason: str, action: str) -> Problem:
    """The verdict, whatever it says, is not about what is being gated: nothing of it is validated."""
    return Problem(State.NOT_VALIDATED, "the verdict", reason, action, checks=0)


def promotion_problems(verdict: dict, variant: Variant, image_digest: str, suite_version: str, max_age: timedelta,
                       now: datetime | None = None) -> list[Problem]:
    """Why `verdict` does not allow promoting the image with `image_digest` as `variant`: the
    gate's reasons, and a verdict with no finish time or older than `max_age`."""
    now = now or datetime.now(timezone.utc)
    problems = gate_problems(verdict, variant, image_digest, suite_version, now=now)
    if verdict["variant"] != variant.name:
        return problems
    if not verdict["finished"]:
        problems.append(_stale("it names no time it finished: its age is unknown", "run the gate again"))
        return problems
    age = now - parse_time(verdict["finished"])
    if age > max_age:
        problems.append(_stale(f"stale: the verdict is {_span(age)} old, more than the {_span(max_age)} allowed",
                               "run the gate again"))
    return problems


_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})")


def parse_time(text: str) -> datetime:
    """An RFC 3339 time with its zone ("2026-12-05T09:00:00+00:00", "...Z"); ValueError, saying
    why, for anything else: no zone, an impossible date or hour, an offset beyond ±23:59."""
    if not isinstance(text, str) or not _TIME.fullmatch(text):
        raise ValueError("not an RFC 3339 time with a zone, such as 2026-12-05T09:00:00+00:00")
    zone = text[-6:]
    if zone[0] in "+-" and (int(zone[1:3]) > 23 or int(zone[4:6]) > 59):
        raise ValueError(f"the offset {zone} is beyond ±23:59")
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise ValueError(f"not a real time ({e})") from None


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
    """Write atomically: a reader never sees half a verdict (and a symlink at `path` is replaced, not followed)."""
    write_whole(path, json.dumps(verdict, indent=1))


@lru_cache(maxsize=1)
def _validator():
    return jsonschema.Draft202012Validator(json.loads(VERDICT_SCHEMA.read_text()))


def load(path: Path) -> dict:
    """A verdict file, validated against its schema; VerdictError, one line naming the file, otherwise."""
    try:
        data = read_regular(path, MAX_VERDICT_BYTES)
    except FileNotFoundError:
        raise VerdictError(f"{path}: no verdict (no run of the suites wrote one)") from None
    except Unusable as e:
        raise VerdictError(f"{path}: not a verdict file: {e}") from None
    return parsed(data, str(path))


def parsed(data: bytes | str, where: str) -> dict:
    """The verdict these bytes hold, strictly parsed and validated; VerdictError naming `where` otherwise."""
    try:
        document = parse(data)
    except Unusable as e:
        raise VerdictError(f"{where}: not a readable verdict: {e}") from None
    return checked(document, where)


def checked(data, where: str) -> dict:
    """`data` once it is a verdict by its schema, its times real; VerdictError naming `where` otherwise."""
    if isinstance(data, dict) and type(data.get("schema")) is int and data["schema"] != SCHEMA:
        raise VerdictError(f"{where}: a verdict of schema {data['schema']}, written by another rendergate: this one "
                           f"reads schema {SCHEMA} (run the suites again with it)")
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise VerdictError(f"{where}: not a rendergate verdict (schema {SCHEMA})")
    try:
        depth_within(data)
        error = jsonschema.exceptions.best_match(_validator().iter_errors(data))
    except (Unusable, RecursionError):
        raise VerdictError(f"{where}: not a valid rendergate verdict: nested too deep") from None
    if error is not None:
        at = error.json_path.removeprefix("$") or "the top"
        raise VerdictError(f"{where}: not a valid rendergate verdict: at {at}: {printable(error.message[:200])}")
    times = {".finished": data["finished"], ".host.started": data["host"].get("started"),
             ".promotion.at": (data.get("promotion") or {}).get("at")}
    for at, text in times.items():
        try:
            if text is not None:
                parse_time(text)
        except ValueError as e:
            raise VerdictError(f"{where}: not a valid rendergate verdict: at {at}: {printable(text[:64])}: {e}") from None
    return data


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
