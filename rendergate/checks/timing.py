"""Timing that can be trusted: warm up once, repeat, compare medians, and say when the spread
is too wide to decide instead of passing or failing on noise, or when the host was busy with
something else during the samples (rendergate.engines.hostload) instead of blaming the image."""
from __future__ import annotations

import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass

from rendergate.engines.hostload import MAX_OUTSIDE_SHARE, HostLoad


@dataclass(frozen=True)
class Series:
    """Wall times, in seconds, of repeated runs of one workload, and for each the share of the
    host's CPUs that other processes used meanwhile (empty when nobody measured it)."""
    samples: tuple[float, ...]
    outside: tuple[float, ...] = ()

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        return (max(self.samples) - min(self.samples)) / self.median

    def as_dict(self) -> dict:
        return {"samples_s": [round(s, 3) for s in self.samples], "median_s": round(self.median, 3),
                "spread": round(self.spread, 3), "outside_load": [round(o, 3) for o in self.outside]}


def measure_pair(baseline, candidate, repeats: int, warm_up=None, load: HostLoad | None = None) -> tuple[Series, Series]:
    """Time two workloads `repeats` times each, interleaved so that drift hits both alike.
    `warm_up` (default: one run of each) fills caches before anything is timed; `load` measures
    what others used of the host during each timed run (None: nobody measures, as for a target
    that is not on this host)."""
    if warm_up:
        warm_up()
    else:
        baseline(), candidate()
    runs: dict[str, tuple[list[float], list[float]]] = {"baseline": ([], []), "candidate": ([], [])}
    for _ in range(repeats):
        for name, workload in (("baseline", baseline), ("candidate", candidate)):
            times, outside = runs[name]
            started = time.monotonic()
            with load.sample() if load else nullcontext([]) as share:
                workload()
            times.append(time.monotonic() - started)
            outside += share
    return tuple(Series(tuple(times), tuple(outside)) for times, outside in runs.values())


@dataclass(frozen=True)
class Speedup:
    """How much faster `candidate` is than `baseline`, and whether that meets `threshold`.

    The runs were interleaved (measure_pair), so each baseline run and the candidate run after it
    saw the same machine: their ratios cancel slow drift, and the verdict is taken on them."""
    baseline: Series
    candidate: Series
    threshold: float
    max_outside: float = MAX_OUTSIDE_SHARE

    @property
    def outside_load(self) -> float | None:
        """The largest share of the host's CPUs others used during any sample (None: not measured)."""
        shares = self.baseline.outside + self.candidate.outside
        return max(shares) if shares else None

    @property
    def ratios(self) -> tuple[float, ...]:
        return tuple(b / c for b, c in zip(self.baseline.samples, self.candidate.samples))

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)

    @property
    def verdict(self) -> str:
        """'host-busy' when others used more than `max_outside` of the host during a sample: the
        figures say nothing about the image. Else 'pass' or 'fail' when the evidence decides;
        'undecided' when the threshold lies within the noise of the paired ratios."""
        if self.outside_load is not None and self.outside_load > self.max_outside:
            return "host-busy"
        low, high = min(self.ratios), max(self.ratios)
        if low >= self.threshold:
            return "pass"
        if high < self.threshold:
            return "fail"
        if abs(self.ratio - self.threshold) < (high - low) / 2:
            return "undecided"
        return "pass" if self.ratio >= self.threshold else "fail"

    def as_dict(self) -> dict:
        return {"baseline": self.baseline.as_dict(), "candidate": self.candidate.as_dict(),
                "speedup": round(self.ratio, 3), "paired_speedups": [round(r, 3) for r in self.ratios],
                "threshold": self.threshold, "max_outside_load": self.max_outside, "verdict": self.verdict}
