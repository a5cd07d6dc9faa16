"""A check's outcome the rendergate way: one-line diagnoses instead of tracebacks (advice held to
the image), GPU checks gated on a GPU host ("not validated", "not supported by this GPU": skips of
their own kind), the commands a check ran kept in its report, and what a report holds redacted."""
from __future__ import annotations

import json

import pytest

from rendergate.core import requirements
from rendergate.core.advice import checked
from rendergate.core.diagnosis import Cause, CheckFailed
from rendergate.core.outcomes import Outcome
from rendergate.core.redact import printable, redact
from rendergate.core.runstate import RunState
from rendergate.plugin.notes import attach, notes_of
from rendergate.plugin.run import RUN_KEY

NO_GPU = "cannot validate: no NVIDIA GPU on "
TRANSCRIPT_CHARS = 3000


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    """In an xdist worker: write down which check of which cell it begins, so that if it dies the
    controller blames that cell's check (xdist's crash report names only the node id)."""
    worker, notes = getattr(item.config, "workerinput", None), notes_of(item)
    if worker and notes and RUN_KEY in item.config.stash:
        running = RunState(item.config.stash[RUN_KEY].run_id).lock_file(f"{worker['workerid']}.running")
        running.write_text(json.dumps({"nodeid": item.nodeid, "cell": notes.cell, "check": notes.check,
                                       "requirement": notes.requirement, "item": notes.item}))


def _gate_on_gpu(item) -> None:
    if item.get_closest_marker("needs_gpu") is None or _gpus(item):
        return
    unread = item.config.stash[RUN_KEY].host_of(item.callspec.params["cell"]).get("gpus_unread")
    if unread:  # not "no GPU": nobody knows
        not_validated(item, CheckFailed(Cause.NO_GPU_ON_HOST, f"cannot validate: the GPUs of {_machine(item)} could "
                                                               f"not be read ({unread})"))
    not_validated(item, CheckFailed(Cause.NO_GPU_ON_HOST, f"{NO_GPU}{_machine(item)} (run on a GPU host, or pass "
                                                           "--allow-no-gpu on CPU-only CI)"))


def _gpus(item) -> list:
    return item.config.stash[RUN_KEY].gpus_of(item.callspec.params["cell"])


def _machine(item) -> str:
    """The machine the cell's image runs on, as a skip names it: this host, or the engine's."""
    run = item.config.stash[RUN_KEY]
    host = run.host_of(item.callspec.params["cell"]).get("host")
    return "this host" if host == run.host["host"] else f"{host} (the engine's host)"


def not_validated(item, failure: CheckFailed):
    """No usable GPU: under --allow-no-gpu a skip counted apart ("not validated"), else `failure`."""
    if item.config.stash[RUN_KEY].allow_no_gpu:
        notes_of(item).skip = Outcome.NO_GPU
        skip = f"{NO_GPU}{_machine(item)} (--allow-no-gpu)"
        generic = failure.diagnosis.message.startswith(NO_GPU)  # else its own words say more
        pytest.skip(skip if generic else printable(f"{skip}: {failure.diagnosis.line()}"))
    raise failure


def _expect_gpu_feature(item) -> None:
    """A GPU check of a requirement that declares a GPU feature (NVENC, OptiX) that every GPU here
    lacks, by the capability table, is "not supported by this GPU": a hardware limit, not an image
    fault. It fails instead when the variant's manifest lists the feature in
    requirements.gpu_must_have."""
    marker = item.get_closest_marker("requires")
    requirement = requirements.get(marker.args[0]) if marker and item.get_closest_marker("needs_gpu") else None
    feature = requirement.gpu_feature if requirement else None
    gpus = _gpus(item) if feature else []
    if not gpus:
        return
    detail = item.callspec.params.get("requirement")
    reasons = [feature.lacking(gpu, detail if isinstance(detail, str) else None) for gpu in gpus]
    if not all(reasons):
        return
    variant = item.callspec.params["cell"].variant
    if feature.name in variant.requirements.get("gpu_must_have", []):
        raise CheckFailed(Cause.GPU_LACKS_ENGINE, f"{reasons[0]}; {variant.name} must have {feature.name} "
                                                  "on every host (requirements.gpu_must_have): run it on a GPU that has it")
    unsupported(item, reasons[0])


def unsupported(item, reason: str):
    """A hardware limit of this GPU: a skip of its own kind that neither passes nor fails."""
    notes_of(item).skip = Outcome.UNSUPPORTED
    pytest.skip(f"not supported by this GPU: {reason}")


def _one_line(item, failure: CheckFailed):
    notes = notes_of(item)
    target = getattr(item, "funcargs", {}).get("target")
    diagnosis = checked(failure.diagnosis, target) if target is not None else failure.diagnosis  # advice held to the image
    if notes:  # a check of rendergate's (a user's own test may raise CheckFailed too)
        notes.cause = diagnosis.cause.value
    raise pytest.fail.Exception(printable(diagnosis.line()), pytrace=False) from None  # it quotes the image


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    try:
        return (yield)
    except CheckFailed as failure:
        _one_line(item, failure)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    target = getattr(item, "funcargs", {}).get("target")
    first = len(target.transcript) if target else 0
    try:
        _gate_on_gpu(item)
        _expect_gpu_feature(item)
        return (yield)
    except CheckFailed as failure:
        _one_line(item, failure)
    finally:
        if target and len(target.transcript) > first:
            item.add_report_section("call", "commands", _transcript(target.transcript[first:]))


def _transcript(results) -> str:
    parts = []
    for r in results:
        out = r.output if len(r.output) <= TRANSCRIPT_CHARS else r.output[:TRANSCRIPT_CHARS] + "\n[... cut]"
        parts.append(f"$ {r.command}\n[exit {r.rc}]\n{out}")
    return "\n".join(parts)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Redact what the report, the terminal and the verdict will hold; send the check's notes with it."""
    report = yield
    attach(item, report)
    report.sections = [(title, redact(text)) for title, text in report.sections]
    if report.longrepr is not None:
        text = str(report.longrepr) if not isinstance(report.longrepr, tuple) else report.longrepr[2]
        if redact(text) != text:
            report.longrepr = report.longrepr[:2] + (redact(text),) if isinstance(report.longrepr, tuple) else redact(text)
    return report
