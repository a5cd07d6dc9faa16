"""What a check, a requirement and a verdict can come to: a check's Outcome, a verdict's State,
and why something declared was not validated (each reason with what to do about it). The one
home of these sets: the verdict schema's enums are tested against them."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum


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

# What a requirement can come to (its checks' outcomes by the table above; passed, or none ran),
# and what a check can: every outcome but not-validated, which is a requirement's.
OF_A_REQUIREMENT = (Outcome.PASSED, Outcome.NOT_RUN, *dict.fromkeys(r for _, r in _REQUIREMENT_OUTCOME))
OF_A_CHECK = tuple(o for o in Outcome if o is not Outcome.NOT_VALIDATED)
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
    Outcome.NO_GPU: Unproven("no NVIDIA GPU on the host it ran on", "run it on a GPU host (--allow-no-gpu skips are not passes)"),
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
