"""Judging a verdict: the one place that decides its State from its checks (judge), says why in
lines a reviewer acts on (summary), and holds a verdict handed to the gate or to promotion to the
variant's current manifest, this image and this rendergate (gate_problems, promotion_problems).
PASSED only when every declared requirement passed on a complete, untrimmed run."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from rendergate.core import requirements
from rendergate.core.environment import described_gpus
from rendergate.core.manifest import Variant
from rendergate.core.outcomes import (
    _REQUIREMENT_OUTCOME,
    DID_NOT_RUN,
    FAULTS,
    FIX_THE_IMAGE,
    NOT_A_PROBLEM,
    NOT_VALIDATED_BECAUSE,
    UNSUPPORTED_REFUSED,
    Outcome,
    State,
)
from rendergate.core.redact import bounded, printable
from rendergate.core.times import parse_time, span

if TYPE_CHECKING:  # the verdict's module judges with this one
    from rendergate.core.verdict import CheckResult, Verdict

# Bounds on what a run writes, well inside the schema's, so that no run can write a verdict its own
# schema refuses (a check printing a megabyte, a thousand failures under one requirement).
MESSAGE_CHARS = 2000  # a check's one-line message
DETAIL_CHARS = 4000  # a problem's list of checks and messages
SUMMARY_LINES = 50
CLOCK_SKEW = timedelta(minutes=5)  # a verdict finished later than now by more than this was not finished yet


@dataclass(frozen=True)
class Problem:
    """Why a verdict does not pass, about one requirement (or check, or the run as a whole)."""
    state: State  # FAILED or NOT_VALIDATED
    subject: str
    reason: str  # a few words that several problems can share: "no NVIDIA GPU on the host it ran on"
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
    ("8 checks of gpu, nvenc: no NVIDIA GPU on the host it ran on: run it on a GPU host"), or in the
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
    shown = [printable(bounded(line, DETAIL_CHARS * 2)) for line in lines[:SUMMARY_LINES]]
    return shown + ([f"... and {len(lines) - SUMMARY_LINES} more problems (the verdict's `problems`)"]
                    if len(lines) > SUMMARY_LINES else [])


def manifest_digest(variant: Variant) -> str:
    return "sha256:" + hashlib.sha256(variant.manifest.read_bytes()).hexdigest()


def declared_requirements(variant: Variant) -> list[str]:
    """The manifest keys a run must prove: requirements, then workloads."""
    qualifiers = requirements.qualifiers()
    return [key for key in variant.declared_keys() if key not in qualifiers]


def requirement_outcomes(checks: list[CheckResult], declared: list[str]) -> dict[str, dict]:
    """Each declared requirement's outcome, from the outcomes of the checks of it that ran."""
    found = {}
    for name in declared:
        ran = [c for c in checks if c.requirement == name and c.outcome not in DID_NOT_RUN]
        outcomes = {c.outcome for c in ran}
        outcome = next((req for check, req in _REQUIREMENT_OUTCOME if check in outcomes),
                       Outcome.PASSED if ran else Outcome.NOT_RUN)
        found[name] = {"outcome": outcome.value, "checks": len(ran)}
    return found


def judgement(verdict: Verdict) -> dict:
    """What a verdict file says of itself, judged from its checks: each requirement's outcome, the
    problems, the state and the summary."""
    problems = judge(verdict)
    return {"requirements": requirement_outcomes(judged_checks(verdict), verdict.declared),
            "problems": [bounded(p.line(), DETAIL_CHARS * 2) for p in problems], "state": state_of(problems).value,
            "summary": summary(problems)}


def unsupported_refused(check: CheckResult, host: dict, must_have: list[str]) -> str | None:
    """Why a check's "not supported by this GPU" is not accepted, or None when it is: only for a
    requirement whose GPU feature (NVENC, OptiX) the verdict's GPUs lack by the capability table,
    and that the manifest does not list in gpu_must_have."""
    requirement = requirements.get(check.requirement)
    feature = requirement.gpu_feature if requirement else None
    if feature is None:
        return f"'{check.requirement or check.check}' names no GPU feature a GPU may lack"
    if feature.name in must_have:
        return f"the manifest must have {feature.name} on every host (requirements.gpu_must_have)"
    gpus = described_gpus(host)
    able = [g.name for g in gpus if not feature.lacking(g, check.item)]
    if not gpus or able:
        return (f"{', '.join(able)} {'has' if len(able) == 1 else 'have'} {feature.name} by the capability table" if able
                else f"the verdict names no GPU that lacks {feature.name}")
    return None


def judged_checks(verdict: Verdict, must_have: list[str] | None = None) -> list[CheckResult]:
    """The verdict's checks as the judge counts them: a "not supported by this GPU" it does not
    accept stands as UNSUPPORTED_REFUSED, with why."""
    judged = []
    for c in verdict.checks:
        why = unsupported_refused(c, verdict.host, must_have or []) if c.outcome == Outcome.UNSUPPORTED else None
        judged.append(replace(c, outcome=UNSUPPORTED_REFUSED, message=f"{c.message} (not accepted: {why})") if why else c)
    return judged


def judge(verdict: Verdict, declared: list[str] | None = None,
          expected: dict[tuple[str, str, str | None], int] | None = None, must_have: list[str] | None = None) -> list[Problem]:
    """Why this verdict does not pass; empty when every declared requirement passed on a run that
    finished and held every check the manifest implies. `declared` and `expected` (default: what
    the verdict says its run declared and expected) are what the gate re-derives from the current
    manifest; `must_have` its requirements.gpu_must_have. A requirement with a failed check is
    FAILED; one whose checks could not prove it (no GPU, busy host, undecided timing, a check that
    did not run) is NOT VALIDATED, once per reason."""
    declared = verdict.declared if declared is None else declared
    expected = verdict.expected if expected is None else expected
    selection = verdict.selection
    checks = judged_checks(verdict, must_have)
    problems = [] if verdict.complete else [not_validated("the run", "partial", checks=0)]
    if verdict.complete and not verdict.finished:
        problems.append(_stale("the verdict says it is complete but names no time it finished", "run it again"))
    problems += [not_validated(printable(error.split(": ", 1)[0]), "uncollected", printable(f"{error}: its checks did not run"),
                                checks=0) for error in selection.collection_errors]
    if not declared:
        problems.append(not_validated(verdict.variant, "nothing-declared", checks=0))
    missing = _missing(checks, expected)
    trims = selection.trims() + ([f"only {', '.join(selection.named)}"] if selection.named else [])
    if trims and not missing:  # what the manifest implies all ran, but a trimmed run is never the evidence
        problems.append(not_validated("the run", "trimmed", f"it was trimmed with {'; '.join(trims)}", checks=0))
    for name, req in requirement_outcomes(checks, declared).items():
        mine = [c for c in checks if c.requirement == name and c.outcome not in DID_NOT_RUN]
        if req["outcome"] == Outcome.FAILED:
            failing = [c for c in mine if c.outcome in FAULTS]
            problems.append(Problem(State.FAILED, name, "failed", FIX_THE_IMAGE, _details(failing), len(failing)))
            continue
        if missing.get(name):
            absent = missing[name]
            runs = sum(n for _, n in absent)
            problems.append(not_validated(name, "missing", bounded(
                f"{', '.join(_named(check, item) for (check, item), _ in absent)} did not run "
                f"({selection.why_missing(verdict.complete)})", DETAIL_CHARS), checks=runs))
        elif not mine:
            problems.append(not_validated(name, Outcome.NOT_RUN, checks=0))
        if req["outcome"] in NOT_A_PROBLEM:
            continue
        for why in NOT_VALIDATED_BECAUSE:
            unproven = [c for c in mine if c.outcome == why]
            if unproven:
                problems.append(not_validated(name, why, _details(unproven), len(unproven)))
    for c in checks:  # checks no requirement names (a user's own check, say) must pass too
        if c.requirement not in declared and c.outcome in FAULTS:
            problems.append(Problem(State.FAILED, c.check, "failed", FIX_THE_IMAGE,
                                    bounded(printable(c.message), MESSAGE_CHARS)))
    return problems


def _missing(checks: list[CheckResult], expected: dict) -> dict[str, list[tuple[tuple[str, str | None], int]]]:
    """By requirement, the expected (check, item) runs that are not among the checks that ran
    (each run is a node id of its own): with how many runs are missing."""
    ran: dict[tuple[str, str, str | None], set[str]] = {}
    for c in checks:
        if c.outcome not in DID_NOT_RUN:
            for item in {c.item, None}:  # a check expected with no item is also run per item (through a fixture)
                ran.setdefault((c.requirement, c.check, item), set()).add(c.nodeid)
    missing: dict[str, list] = {}
    for (requirement, check, item), runs in sorted(expected.items(), key=lambda e: (e[0][0], e[0][1], e[0][2] or "")):
        absent = runs - len(ran.get((requirement, check, item), ()))
        if absent > 0:
            missing.setdefault(requirement, []).append(((check, item), absent))
    return missing


def _named(check: str, item: str | None) -> str:
    return printable(check + (f"[{item}]" if item else ""))


def _details(checks: list[CheckResult]) -> str:
    """The checks' lines, each message once: "check_a, check_b[x]: the message"."""
    by_message: dict[str, list[str]] = {}
    for c in checks:
        message = bounded(printable(c.message), MESSAGE_CHARS) or f"{c.outcome}, with no message"
        by_message.setdefault(message, []).append(_named(c.check, c.item))
    return bounded("; ".join(f"{', '.join(names)}: {message}" for message, names in by_message.items()), DETAIL_CHARS)


def image_mismatch(verdict: Verdict, image_digest: str) -> str | None:
    """Why the verdict is not about the image with this digest, or None when it is."""
    tested = (verdict.image or {}).get("digest")
    if tested == image_digest:
        return None
    return f"mismatched: the verdict is about image {tested or 'none'}, the candidate is {image_digest}"


def gate_problems(verdict: Verdict, variant: Variant, image_digest: str | None, suite_version: str,
                  gpu_type: str | None = None, now: datetime | None = None,
                  engine: tuple[str, str, str] | None = None) -> list[Problem]:
    """Why `verdict` does not prove `variant` (its current manifest) for the image with
    `image_digest` (None: no image, the host) on this rendergate; on `gpu_type` for a matrix cell;
    on the Docker engine `engine` (its id, its host's name, how it was named) for any verdict but
    a Modal cell's (whose engine is Modal).
    What must have run is re-derived: the requirements the manifest declares and every check they
    imply (requirements.expected_checks), besides whatever the verdict says its run expected."""
    if verdict.variant != variant.name:
        return [_stale(f"it is about variant {verdict.variant}, not {variant.name}", "run the gate on this variant")]
    if gpu_type and verdict.host["gpu_type"] != gpu_type:
        return [_stale(f"it is about {verdict.host['gpu_type']}, not the cell's GPU type {gpu_type}",
                       "run the matrix again")]
    expected = {**verdict.expected}
    for key, runs in requirements.expected_checks(variant).items():
        expected[key] = max(runs, expected.get(key, 0))
    problems = judge(verdict, declared_requirements(variant), expected, variant.requirements.get("gpu_must_have", []))
    if image_digest:
        mismatch = image_mismatch(verdict, image_digest)
        if mismatch:
            problems.append(_stale(mismatch, "run the gate on this image"))
    ran = (verdict.host.get("engine_id"), verdict.host.get("host"))
    if engine and verdict.target != "modal" and ran != engine[:2]:
        if not ran[0]:
            problems.append(_stale(f"it names no Docker engine it ran on (made before rendergate bound verdicts to "
                                   f"engines, or not by a run of the docker target), and the gate is on {engine[2]}",
                                   "run it again"))
        else:
            problems.append(_stale(f"it ran on the engine of {ran[1]} ({ran[0]}), not on {engine[2]}, the engine of "
                                   f"{engine[1]} ({engine[0]})", "gate it with the --engine it ran on, or run it on this one"))
    if verdict.manifest != manifest_digest(variant):
        problems.append(_stale(f"stale: {variant.manifest} changed since the verdict", "run the gate again"))
    if verdict.checks_code != requirements.checks_digest():
        problems.append(_stale("stale: the run's folders of checks are not the ones given here (their code changed "
                               "since, or the run had other --checks)", "run the gate again, with the run's --checks"))
    if verdict.host["suite_version"] != suite_version:
        problems.append(_stale(f"stale: the verdict was made by rendergate {verdict.host['suite_version']}, "
                               f"this is {suite_version}", "run the gate again"))
    finished = parse_time(verdict.finished) if verdict.finished else None
    if finished and finished > (now or datetime.now(timezone.utc)) + CLOCK_SKEW:
        problems.append(_stale(f"it says it finished at {verdict.finished}, in the future (a clock that is wrong, "
                               "or an edited verdict)", "run the gate again"))
    return problems


def _stale(reason: str, action: str) -> Problem:
    """The verdict, whatever it says, is not about what is being gated: nothing of it is validated."""
    return Problem(State.NOT_VALIDATED, "the verdict", reason, action, checks=0)


def promotion_problems(verdict: Verdict, variant: Variant, image_digest: str, suite_version: str, max_age: timedelta,
                       now: datetime | None = None) -> list[Problem]:
    """Why `verdict` does not allow promoting the image with `image_digest` as `variant`: the
    gate's reasons but the engine's (the image may be promoted from another engine that holds it:
    the gate said where it was proven), and a verdict with no finish time or older than `max_age`."""
    now = now or datetime.now(timezone.utc)
    problems = gate_problems(verdict, variant, image_digest, suite_version, now=now)
    if verdict.variant != variant.name:
        return problems
    if not verdict.finished:
        problems.append(_stale("it names no time it finished: its age is unknown", "run the gate again"))
        return problems
    age = now - parse_time(verdict.finished)
    if age > max_age:
        problems.append(_stale(f"stale: the verdict is {span(age)} old, more than the {span(max_age)} allowed",
                               "run the gate again"))
    return problems


