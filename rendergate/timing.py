"""Timing that can be trusted: warm up once, repeat, compare medians, and say when the spread
is too wide to decide instead of passing or failing on noise."""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Series:
    """Wall times, in seconds, of repeated runs of one workload."""
    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        return (max(self.samples) - min(self.samples)) / self.median

    def as_dict(self) -> dict:
        return {"samples_s": [round(s, 3) for s in self.samples], "median_s": round(self.median, 3),
                "spread": round(self.spread, 3)}


def timed(fn) -> float:
    started = time.monotonic()
    fn()
    return time.monotonic() - started


def measure_pair(baseline, candidate, repeats: int, warm_up=None) -> tuple[Series, Series]:
    """Time two workloads `repeats` times each, interleaved so that drift hits both alike.
    `warm_up` (default: one run of each) fills caches before anything is timed."""
    if warm_up:
        warm_up()
    else:
        baseline(), candidate()
    base, cand = [], []
    for _ in range(repeats):
        base.append(timed(baseline))
        cand.append(timed(candidate))
    return Series(tuple(base)), Series(tuple(cand))


@dataclass(frozen=True)
class Speedup:
    """How much faster `candidate` is than `baseline`, and whether that meets `threshold`.

    The runs were interleaved (measure_pair), so each baseline run and the candidate run after it
    saw the same machine: their ratios cancel slow drift, and the verdict is taken on them."""
    baseline: Series
    candidate: Series
    threshold: float

    @property
    def ratios(self) -> tuple[float, ...]:
        return tuple(b / c for b, c in zip(self.baseline.samples, self.candidate.samples))

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)

    @property
    def verdict(self) -> str:
        """'pass' or 'fail' when the evidence decides; 'undecided' when the threshold lies within
        the noise of the paired ratios."""
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
                "threshold": self.threshold, "verdict": self.verdict}
