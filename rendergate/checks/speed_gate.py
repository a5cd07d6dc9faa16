"""The speed gate: a timed workload's Speedup held to its threshold, and to the figure of the
last promoted image of the variant. The policy is here; the plugin's `speed_gate` fixture only
says the decision the pytest way (a failure, or a skip of its own kind)."""
from __future__ import annotations

from dataclasses import dataclass

from rendergate.checks.timing import Speedup
from rendergate.core.diagnosis import Cause
from rendergate.core.outcomes import Outcome
from rendergate.core.platforms import Platform
from rendergate.core.verdict import Verdict


@dataclass(frozen=True)
class Decision:
    """What the gate decided of one Speedup: PASSED, FAILED (with its cause), HOST_BUSY or
    UNDECIDED (neither a pass nor a failure), and the line that says why."""
    outcome: Outcome
    line: str = ""
    cause: Cause | None = None


def decide(name: str, speedup: Speedup, previous: Verdict | None = None, gpu_type: str = "", platform: str = "",
           check: str = "", allowed: float | None = None) -> Decision:
    """Below the threshold fails; noise straddling it is undecided; a sample during which other
    processes used more than the allowed share of the host is host-busy; a pass that fell further
    below `previous`'s figure (the last promoted verdict) than `allowed` fails as a regression."""
    b, c = speedup.baseline, speedup.candidate
    detail = (f"{speedup.ratio:.2f}x (medians {b.median:.2f} s vs {c.median:.2f} s, "
              f"spreads {b.spread:.0%} / {c.spread:.0%}), threshold {speedup.threshold}x")
    if speedup.verdict == "host-busy":
        return Decision(Outcome.HOST_BUSY, f"host busy: other processes used {speedup.outside_load:.0%} of this host's "
                                           f"CPUs during a timed sample (at most {speedup.max_outside:.0%} allowed): "
                                           f"{name} speedup {detail} says nothing about the image; rerun on a quiet machine")
    if speedup.verdict == "fail":
        return Decision(Outcome.FAILED, f"{name}: speedup {detail}", Cause.BELOW_THRESHOLD)
    if speedup.verdict == "undecided":
        return Decision(Outcome.UNDECIDED, f"undecided: {name} speedup {detail}: too noisy to decide, not a pass")
    worse = regression(previous, gpu_type, platform, check, name, speedup.ratio, allowed) if allowed is not None else None
    return Decision(Outcome.FAILED, worse, Cause.REGRESSED) if worse else Decision(Outcome.PASSED)


def regression(previous: Verdict | None, gpu_type: str, platform: str, check: str, figure: str, speedup: float,
               allowed: float) -> str | None:
    """A line saying how much `figure` of `check` regressed against the last promoted verdict,
    when that is more than `allowed` (a fraction); None when it did not, or nothing compares.
    Figures compare only between runs on the same GPU type and platform (gVisor slows parallel
    work: the manim 2-part speedup measured 0.74x under runsc here, about 0.85x under runc)."""
    if not previous or previous.host.get("gpu_type") != gpu_type or (previous.platform or Platform.NATIVE) != platform:
        return None
    for c in previous.checks:
        old = c.check == check and c.figures.get(figure, {}).get("speedup")
        if old:
            loss = 1 - speedup / old
            if loss > allowed:
                promoted = previous.promotion or {}
                return (f"{figure}: speedup {speedup:.2f}x, {loss:.0%} below {old:.2f}x of the last promoted image "
                        f"({promoted.get('to', (previous.image or {}).get('ref'))}, "
                        f"{(previous.finished or '')[:10]}); at most {allowed:.0%} allowed")
            return None
    return None
