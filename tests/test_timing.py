"""The speedup verdict, on series shaped like those measured here (docs: README 'Measured here')."""
from rendergate.timing import Series, Speedup


def verdict(base, cand, threshold=1.6):
    return Speedup(Series(tuple(base)), Series(tuple(cand)), threshold).verdict


def test_every_paired_ratio_above_the_threshold_passes_despite_drift():
    # measured on this machine: the serial runs drifted from 10.1 to 13.8 s
    assert verdict([10.109, 12.68, 13.833], [6.167, 7.213, 5.792]) == "pass"


def test_a_parallel_run_that_serialises_fails():
    assert verdict([12.0, 12.2, 11.9], [11.8, 12.1, 12.0]) == "fail"


def test_noise_straddling_the_threshold_is_undecided():
    assert verdict([10.0, 10.0, 10.0], [5.0, 6.25, 7.0]) == "undecided"


def test_median_decides_when_the_threshold_is_outside_the_noise():
    assert verdict([10.0, 10.0, 10.0], [5.0, 5.2, 6.4]) == "pass"  # ratios 2.0, 1.92, 1.56
