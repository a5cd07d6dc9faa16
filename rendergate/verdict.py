"""Verdicts: per variant, what a run proved about one image, in a JSON file CI decides from.

A verdict holds the image digest, the host it ran on, every check's outcome and diagnosis, the
workloads' figures, and whether the run finished. It is written when the run starts (partial)
and rewritten as results arrive, so a run that is killed still leaves a partial verdict.

judge() is the one place that decides whether a verdict passes: every declared requirement must
have passed on this run. A check skipped for lack of a GPU, an undecided timing and a requirement
no check ran for are not passes. gate_problems() judges a verdict handed to the gate: against the
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
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path

import jsonschema

from .assets import VERDICT_SCHEMA
from .diagnosis import GVISOR, NATIVE
from .manifest import QUALIFIERS, Variant

SCHEMA = 1
MAX_VERDICT_BYTES = 64 * 2**20
# Outcomes of a requirement, from its checks' outcomes; only "passed" passes, and "unsupported"
# (the GPU lacks the feature, by the capability table: a hardware limit) does not fail it.
_REQUIREMENT_OUTCOME = (  # the first that any of its checks has, wins
    ("failed", "failed"), ("error", "failed"), ("no-gpu", "not-validated"), ("undecided", "undecided"),
    ("skipped", "skipped"), ("unsupported", "unsupported"))
NOT_A_PROBLEM = ("passed", "unsupported")
# Checks that do not apply to this variant: neither a pass nor a problem.
NOT_COUNTED = ("not-declared", "not-applicable")
_EXPLAIN = {
    "failed": "failed",
    "not-validated": "NOT validated: no NVIDIA GPU on the host (--allow-no-gpu skips are not passes)",
    "undecided": "undecided: the timing was too noisy to decide",
    "skipped": "skipped",
    "not-run": "not run: no check of it ran in this run (deselected, or the run stopped first)",
}


class VerdictError(Exception):
    """A verdict file that cannot be used; the message names the file."""


def manifest_digest(variant: Variant) -> str:
    return "sha256:" + hashlib.sha256(variant.manifest.read_bytes()).hexdigest()


def declared_requirements(variant: Variant) -> list[str]:
    """The manifest keys a run must prove: requirements, then workloads."""
    names = [n for n in variant.requirements if n not in QUALIFIERS] + [f"workloads.{k}" for k in variant.workloads]
    return [n for n in names if variant.declared(n) not in (None, False)]


def new_verdict(variant: Variant, run_id: str, target: str, host: dict, options: dict) -> dict:
    return {"schema": SCHEMA, "variant": variant.name, "run_id": run_id, "target": target,
            "image": None, "manifest": manifest_digest(variant), "declared": declared_requirements(variant),
            "host": host, "options": options, "complete": False, "finished": None,
            "containers_started": 0, "checks": [], "requirements": {}, "problems": [], "passed": False}


def requirement_outcomes(checks: list[dict], declared: list[str]) -> dict[str, dict]:
    """Each declared requirement's outcome, from the outcomes of the checks of it that ran."""
    requirements = {}
    for name in declared:
        ran = [c for c in checks if c["requirement"] == name and c["outcome"] not in NOT_COUNTED]
        outcomes = {c["outcome"] for c in ran}
        outcome = next((req for check, req in _REQUIREMENT_OUTCOME if check in outcomes), "passed" if ran else "not-run")
        requirements[name] = {"outcome": outcome, "checks": len(ran)}
    return requirements


def settle(verdict: dict) -> dict:
    """Fill in the requirement outcomes, the problems and the overall pass from the checks."""
    verdict["requirements"] = requirement_outcomes(verdict["checks"], verdict["declared"])
    verdict["problems"] = judge(verdict)
    verdict["passed"] = not verdict["problems"]
    return verdict


def judge(verdict: dict, declared: list[str] | None = None) -> list[str]:
    """Why this verdict does not pass, one line each; empty when every declared requirement passed
    on a run that finished. `declared` (default: what the verdict says its manifest declared) is
    re-derived from the checks, never taken from the verdict's own summary."""
    declared = verdict["declared"] if declared is None else declared
    problems = [] if verdict["complete"] else ["the run did not finish (interrupted or crashed): this verdict is PARTIAL"]
    if not declared:
        problems.append(f"{verdict['variant']} declares no requirement: the run proved nothing")
    for name, req in requirement_outcomes(verdict["checks"], declared).items():
        if req["outcome"] in NOT_A_PROBLEM:
            continue
        failing = [c for c in verdict["checks"] if c["requirement"] == name and c["outcome"] != "passed"]
        detail = "; ".join(f"{c['check']}{'[' + c['item'] + ']' if c['item'] else ''}: {c['message']}"
                           for c in failing if c["message"])
        problems.append(f"{name}: {_EXPLAIN[req['outcome']]}" + (f" ({detail})" if detail else ""))
    for c in verdict["checks"]:  # checks no requirement names (a user's own check, say) must pass too
        if c["requirement"] not in declared and c["outcome"] in ("failed", "error"):
            problems.append(f"{c['check']}: {c['message']}")
    return problems


def image_mismatch(verdict: dict, image_digest: str) -> str | None:
    """Why the verdict is not about the image with this digest, or None when it is."""
    tested = (verdict.get("image") or {}).get("digest")
    if tested == image_digest:
        return None
    return f"mismatched: the verdict is about image {tested or 'none'}, the candidate is {image_digest}"


def gate_problems(verdict: dict, variant: Variant, image_digest: str | None, suite_version: str,
                  gpu_type: str | None = None) -> list[str]:
    """Why `verdict` does not prove `variant` (its current manifest) for the image with
    `image_digest` (None: no image, the host) on this rendergate; on `gpu_type` for a matrix cell."""
    if verdict["variant"] != variant.name:
        return [f"the verdict is about variant {verdict['variant']}, not {variant.name}"]
    if gpu_type and verdict["host"]["gpu_type"] != gpu_type:
        return [f"the verdict is about {verdict['host']['gpu_type']}, not the cell's GPU type {gpu_type}"]
    problems = judge(verdict, declared_requirements(variant))
    if image_digest:
        mismatch = image_mismatch(verdict, image_digest)
        if mismatch:
            problems.append(f"{mismatch}: run the gate on this image")
    if verdict["manifest"] != manifest_digest(variant):
        problems.append(f"stale: {variant.manifest} changed since the verdict: run the gate again")
    if verdict["host"]["suite_version"] != suite_version:
        problems.append(f"stale: the verdict was made by rendergate {verdict['host']['suite_version']}, "
                        f"this is {suite_version}: run the gate again")
    return problems


def promotion_problems(verdict: dict, variant: Variant, image_digest: str, suite_version: str, max_age: timedelta,
                       now: datetime | None = None) -> list[str]:
    """Why `verdict` does not allow promoting the image with `image_digest` as `variant`."""
    problems = gate_problems(verdict, variant, image_digest, suite_version)
    if problems and problems[0].startswith("the verdict is about variant"):
        return problems
    finished = verdict["finished"]
    age = (now or datetime.now(timezone.utc)) - datetime.fromisoformat(finished) if finished else None
    if age is not None and age > max_age:
        problems.append(f"stale: the verdict is {_span(age)} old, more than the {_span(max_age)} allowed: run the gate again")
    return problems


def _span(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


def regression(previous: dict | None, gpu_type: str, platform: str, check: str, figure: str, speedup: float,
               allowed: float) -> str | None:
    """A line saying how much `figure` of `check` regressed against the last promoted verdict,
    when that is more than `allowed` (a fraction); None when it did not, or nothing compares.
    Figures compare only between runs on the same GPU type and platform (gVisor slows parallel
    work: the manim 2-part speedup measured 0.74x under runsc here, about 0.85x under runc)."""
    if not previous or previous["host"].get("gpu_type") != gpu_type or previous.get("platform", NATIVE) != platform:
        return None
    for c in previous["checks"]:
        old = c["check"] == check and c["figures"].get(figure, {}).get("speedup")
        if old:
            loss = 1 - speedup / old
            if loss > allowed:
                promoted = previous.get("promotion", {})
                return (f"{figure}: speedup {speedup:.2f}x, {loss:.0%} below {old:.2f}x of the last promoted image "
                        f"({promoted.get('to', (previous.get('image') or {}).get('ref'))}, "
                        f"{(previous.get('finished') or '')[:10]}); at most {allowed:.0%} allowed")
            return None
    return None


def platform_differences(verdicts: list[dict]) -> list[str]:
    """Checks that fail under gVisor but pass on a native kernel, for the same variant, GPU type
    and image: the platform's doing, not the image's (run a variant under both, `--runtime`, and
    merge the two verdicts to see it)."""
    lines = []
    native = {(v["variant"], v["host"].get("gpu_type"), (v.get("image") or {}).get("digest")): v
              for v in verdicts if v.get("platform", NATIVE) == NATIVE}
    for sandboxed in (v for v in verdicts if v.get("platform") == GVISOR):
        key = (sandboxed["variant"], sandboxed["host"].get("gpu_type"), (sandboxed.get("image") or {}).get("digest"))
        control = native.get(key)
        if not control:
            continue
        passed = {(c["check"], c["item"]) for c in control["checks"] if c["outcome"] == "passed"}
        for c in sandboxed["checks"]:
            if c["outcome"] in ("failed", "error") and (c["check"], c["item"]) in passed:
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
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise VerdictError(f"{where}: not a rendergate verdict (schema {SCHEMA})")
    error = jsonschema.exceptions.best_match(_validator().iter_errors(data))
    if error is not None:
        at = error.json_path.removeprefix("$") or "the top"
        raise VerdictError(f"{where}: not a valid rendergate verdict: at {at}: {error.message[:200]}")
    return data


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
