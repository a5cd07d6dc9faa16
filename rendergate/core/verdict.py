"""Verdicts: per variant, what a run proved about one image, in a JSON file CI decides from.

A verdict holds the image digest, the host it ran on, every check's outcome and diagnosis, the
workloads' figures, and whether the run finished. It is written when the run starts (partial)
and rewritten as results arrive, so a run that is killed still leaves a partial verdict. A run
fills in a typed Verdict, check by check (CheckResult, with an Outcome); its as_json() is the
file, of schema SCHEMA; a file of another schema is refused in one line saying so.

Every reader (the gate, promotion, verify, merge, the pages, mutation testing) reads a file back
as the same typed Verdict (load(), checked(): validated against data/verdict.schema.json first),
and judges it again from its checks (rendergate.core.judging): never the state a file says of
itself.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path


from rendergate.core import requirements
from rendergate.core.assets import VERDICT_SCHEMA
from rendergate.core.jsonfile import Unusable, depth_within, parse, read_regular, write_whole
from rendergate.core.judging import MESSAGE_CHARS, declared_requirements, judgement, manifest_digest
from rendergate.core.manifest import Variant
from rendergate.core.outcomes import Outcome
from rendergate.core.platforms import Platform
from rendergate.core.redact import bounded, printable
from rendergate.core.selection import Selection
from rendergate.core.times import parse_time

SCHEMA = 1
MAX_VERDICT_BYTES = 64 * 2**20

# What a verdict file holds that the Verdict reads or as_json() writes (the last four judged).
_WRITTEN = {"schema", "variant", "run_id", "target", "image", "manifest", "declared", "host", "options", "complete",
            "finished", "containers_started", "checks", "expected", "selection", "checks_code", "platform", "sandboxes",
            "gpu_seconds", "promotion", "requirements", "problems", "state", "summary"}


class VerdictError(Exception):
    """A verdict file that cannot be used; the message names the file."""


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
                "message": bounded(self.message, MESSAGE_CHARS), "figures": self.figures}

    @classmethod
    def from_json(cls, data: dict) -> "CheckResult":
        return cls(data["nodeid"], data["check"], data["requirement"], data["item"], Outcome(data["outcome"]),
                   data["cause"], data["message"], dict(data["figures"]))


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
    checks_code: str | None = None  # the digest of the run's folders of checks (requirements.checks_digest)
    promotion: dict | None = None  # where `rendergate promote` tagged the image, once it did
    unread: dict = field(default_factory=dict)  # what a file held that this rendergate does not read, kept as it was

    @classmethod
    def start(cls, variant: Variant, run_id: str, target: str, host: dict, options: dict,
              selection: Selection | None = None) -> "Verdict":
        return cls(variant.name, run_id, target, manifest_digest(variant), declared_requirements(variant), host, options,
                   expected=requirements.expected_checks(variant), selection=selection or Selection(),
                   checks_code=requirements.checks_digest())

    @classmethod
    def from_json(cls, data: dict) -> "Verdict":
        """A verdict file's content, once valid by its schema, as the typed Verdict a run fills in;
        what the file said of its own state is not kept: as_json() judges it again."""
        return cls(data["variant"], data["run_id"], data["target"], data["manifest"], list(data["declared"]),
                   dict(data["host"]), dict(data["options"]), image=data["image"],
                   platform=Platform(data["platform"]) if data.get("platform") else None, complete=data["complete"],
                   finished=data["finished"], containers_started=data["containers_started"],
                   checks=[CheckResult.from_json(c) for c in data["checks"]], sandboxes=list(data.get("sandboxes", [])),
                   gpu_seconds=data.get("gpu_seconds"), selection=Selection.of(data),
                   expected={(e["requirement"], e["check"], e["item"]): e["runs"] for e in data.get("expected", [])},
                   checks_code=data.get("checks_code"), promotion=data.get("promotion"),
                   unread={key: value for key, value in data.items() if key not in _WRITTEN})

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
                "selection": self.selection.as_json()}
        data |= {"checks_code": self.checks_code} if self.checks_code is not None else {}
        data |= {"platform": self.platform} if self.platform else {}
        data |= {"sandboxes": self.sandboxes} if self.sandboxes else {}
        data |= {"gpu_seconds": self.gpu_seconds} if self.gpu_seconds is not None else {}
        data |= {"promotion": self.promotion} if self.promotion else {}
        data = {**self.unread, **data}
        return data | judgement(Verdict.from_json(data))  # judged as the file holds it (its values bounded)


def write(path: Path, verdict: dict) -> None:
    """Write atomically: a reader never sees half a verdict (and a symlink at `path` is replaced, not followed)."""
    write_whole(path, json.dumps(verdict, indent=1))


@lru_cache(maxsize=1)
def _validator():
    """The schema's validator, jsonschema imported only when a verdict is read (not in every worker)."""
    import jsonschema
    return jsonschema.Draft202012Validator(json.loads(VERDICT_SCHEMA.read_text()))


def load(path: Path) -> Verdict:
    """A verdict file, validated against its schema, as the typed Verdict; VerdictError, one line
    naming the file, otherwise."""
    try:
        data = read_regular(path, MAX_VERDICT_BYTES)
    except FileNotFoundError:
        raise VerdictError(f"{path}: no verdict (no run of the suites wrote one)") from None
    except Unusable as e:
        raise VerdictError(f"{path}: not a verdict file: {e}") from None
    return parsed(data, str(path))


def parsed(data: bytes | str, where: str) -> Verdict:
    """The verdict these bytes hold, strictly parsed and validated; VerdictError naming `where` otherwise."""
    try:
        document = parse(data)
    except Unusable as e:
        raise VerdictError(f"{where}: not a readable verdict: {e}") from None
    return checked(document, where)


def checked(data, where: str) -> Verdict:
    """`data` as a Verdict once it is one by its schema, its times real; VerdictError naming `where` otherwise."""
    if isinstance(data, dict) and type(data.get("schema")) is int and data["schema"] != SCHEMA:
        raise VerdictError(f"{where}: a verdict of schema {data['schema']}, written by another rendergate: this one "
                           f"reads schema {SCHEMA} (run the suites again with it)")
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise VerdictError(f"{where}: not a rendergate verdict (schema {SCHEMA})")
    try:
        depth_within(data)
        from jsonschema.exceptions import best_match
        error = best_match(_validator().iter_errors(data))
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
    return Verdict.from_json(data)


