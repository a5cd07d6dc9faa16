"""The speedup verdict, on series shaped like those measured here (docs: README 'Measured here'),
and the host's outside load, measured with real processes."""
import os
import subprocess
import time

import psutil
import pytest

from conftest import BASE_IMAGE, busy_loop
from rendergate.checks.timing import Series, Speedup
from rendergate.engines.docker_engine import LABEL_RUN
from rendergate.engines.hostload import MAX_OUTSIDE_SHARE, HostLoad, containers_seconds


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


def test_a_busy_host_is_neither_a_pass_nor_a_fail():
    """Whatever the ratios say, a sample during which others used more than the stated share of
    the host decides nothing; under it, the ratios decide as before."""
    clear_pass, clear_fail = ([10.0, 10.1, 9.9], [5.0, 5.1, 4.9]), ([12.0, 12.2, 11.9], [11.8, 12.1, 12.0])
    for (base, cand), quiet in ((clear_pass, "pass"), (clear_fail, "fail")):
        busy = Speedup(Series(tuple(base), (0.01, 0.48, 0.02)), Series(tuple(cand), (0.01, 0.01, 0.01)), 1.6)
        assert (busy.verdict, busy.outside_load) == ("host-busy", 0.48)
        calm = Speedup(Series(tuple(base), (0.01, 0.2, 0.02)), Series(tuple(cand), (0.0, 0.01, 0.01)), 1.6)
        assert calm.verdict == quiet
    assert Speedup(Series((10.0,)), Series((5.0,)), 1.6).outside_load is None  # not measured: not judged on it


@pytest.mark.serial  # alone among the tests: any other of them would count as outside load
def test_cpu_used_outside_the_run_is_measured_and_the_runs_own_is_not():
    """Real processes: a busy loop (one of this machine's cores: 1/N of it) is outside load to a
    run it is not part of, and not to the run whose process started it. Both are measured over the
    same seconds, so whatever else the host runs (a CI run beside a CPU hog) counts alike in both."""
    bystander = subprocess.Popen(["sleep", "10"])  # a run that does nothing
    try:
        with HostLoad(bystander.pid).sample() as theirs, HostLoad(os.getpid()).sample() as ours:
            busy_loop(3).wait()  # this process's child
    finally:
        bystander.kill()
    assert theirs[0] - ours[0] > 0.8 / (psutil.cpu_count() or 1) and theirs[0] > MAX_OUTSIDE_SHARE, (theirs, ours)


@pytest.mark.serial
def test_a_containers_cpu_is_the_runs_own_and_reading_it_costs_little(engine):
    """A busy loop inside one of the run's containers is the run's own work, not outside load
    (measured with and without the containers' accounts over the same seconds); and reading the
    containers' CPU time brackets a sample without slowing it (the engine's stats API, at one
    answer a second, once added 2 s to every sample and failed a good image's gate)."""
    run_id = f"hostload-{os.getpid()}"
    container = engine.client.containers.run(BASE_IMAGE, ["sleep", "60"], detach=True, labels={LABEL_RUN: run_id})
    try:
        own = containers_seconds(engine, run_id)
        started = time.monotonic()
        own(), own()  # a sample reads it as it starts and as it ends
        assert time.monotonic() - started < 0.2
        with HostLoad(os.getpid(), own).sample() as outside, HostLoad(os.getpid()).sample() as unaccounted:
            container.exec_run(["sh", "-c", "i=0; while [ $i -lt 3000000 ]; do i=$((i+1)); done"])
        assert unaccounted[0] - outside[0] > 0.5 / (psutil.cpu_count() or 1), (unaccounted, outside)
    finally:
        engine.remove(container.id)
