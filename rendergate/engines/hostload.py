"""How busy the rest of the host was while a timed sample ran.

A speedup measured while something else keeps a core busy says nothing about the image: a good
parallel image looks serial. So each timed sample also measures the CPU time the whole host used
(psutil's /proc/stat totals) less the CPU time of this run: its processes (the run owner's process
tree, xdist's workers and the commands they ran, through psutil) and its containers (each one's
cgroup CPU accounting, which covers every process started in it). What is left was used by
others; as a share of all the host's CPUs over the sample's wall time, it decides whether the
host was quiet enough for the sample to count (rendergate.checks.timing.Speedup).

The engine's and the kernel's own work for this run (dockerd relaying a `docker exec`) counts as
outside: measured here at about 1% of two CPUs during a Manim render, far below the limit.

On another machine (an engine reached over ssh or tcp), the same is read by one command in the
run's container there (TargetLoad): the host's CPU totals from /proc/stat, which a container
shares with its host, less the container's own CPU time from its cgroup. The run's processes are
not on that machine, and while a timed check runs no other check of the run does.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from rendergate.core.diagnosis import Cause, CheckFailed
from rendergate.engines.docker_engine import docker_sdk

# Above this share of the host's CPUs used by others during a sample, the timing is not decided.
MAX_OUTSIDE_SHARE = 0.25


def _busy_seconds() -> float:
    """CPU seconds the host has spent on anything but idling, since boot, all CPUs together."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)


def _tree_seconds(root_pid: int) -> float:
    """CPU seconds of a process and its descendants, including their reaped children: a command
    that started and ended during a sample counts in its parent's children times."""
    try:
        root = psutil.Process(root_pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for process in processes:
        try:
            t = process.cpu_times()
        except psutil.NoSuchProcess:  # ended while we looked: its time is now its parent's
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


class HostLoad:
    """Measures what others used of the host during each sample of this run.

    `root_pid` is the run's owner (xdist's controller); `container_seconds` gives the CPU seconds
    the run's containers have used so far (Engine.cpu_seconds)."""

    def __init__(self, root_pid: int, container_seconds: Callable[[], float] = lambda: 0.0):
        self.root_pid = root_pid
        self.container_seconds = container_seconds
        self.cpus = psutil.cpu_count() or 1

    def reading(self) -> tuple[float, float]:
        """CPU seconds the host has been busy, and of them this run's, so far."""
        return _busy_seconds(), _tree_seconds(self.root_pid) + self.container_seconds()

    @contextmanager
    def sample(self) -> Iterator[list[float]]:
        """Measure the block; once it ended, the yielded list holds the share of the host's CPUs
        that others used during it."""
        share: list[float] = []
        started, (busy, own) = time.monotonic(), self.reading()
        yield share
        wall = time.monotonic() - started
        busy_after, own_after = self.reading()
        others = (busy_after - busy) - (own_after - own)
        share.append(max(0.0, others) / (wall * self.cpus) if wall > 0 else 0.0)


# The host's CPU totals (USER_HZ, 100 a second on Linux) and the container's own CPU time: cgroup v2's
# cpu.stat (usage_usec, its first line) or v1's cpuacct.usage (ns). Shell builtins only: any image's sh reads it.
_READ_LOAD = ('read -r line < /proc/stat && echo "$line"; for f in /sys/fs/cgroup/cpu.stat '
              '/sys/fs/cgroup/cpuacct/cpuacct.usage /sys/fs/cgroup/cpu,cpuacct/cpuacct.usage; do '
              '[ -r "$f" ] && read -r own < "$f" && echo "${f##*/} $own" && break; done')
USER_HZ = 100


class TargetLoad(HostLoad):
    """What others used of the machine a container runs on (another one: an engine reached over
    ssh or tcp), read by one command in that container before and after each sample."""

    def __init__(self, target, cpus: int):  # HostLoad's sample(), with readings of its own: no process here is the run's
        self.target, self.cpus = target, max(cpus, 1)

    def reading(self) -> tuple[float, float]:
        lines = self.target.run(_READ_LOAD, timeout=30).stdout.splitlines()
        try:
            ticks = [int(n) for n in lines[0].split()[1:]]  # user nice system idle iowait irq softirq steal ...
            source, value = lines[1].split()[0], lines[1].split()[-1]
            own = int(value) / (1e9 if source == "cpuacct.usage" else 1e6)
        except (IndexError, ValueError):
            raise CheckFailed(Cause.TARGET_UNAVAILABLE, f"the load of {self.target.name}'s host could not be read in "
                                                        f"its container (/proc/stat and its cgroup's CPU time): "
                                                        f"{lines!r}"[:300]) from None
        return (sum(ticks[:3]) + sum(ticks[5:8])) / USER_HZ, own


def containers_seconds(engine, run_id: str) -> Callable[[], float]:
    """The CPU seconds the run's containers have used so far, read from each one's cgroup (the
    engine's stats API answers only once a second: too slow to bracket a sample)."""
    docker = docker_sdk()  # where a container is at hand: not when the plugin imports this module
    accounts: dict[str, Callable[[], float]] = {}

    def seconds() -> float:
        total = 0.0
        for container in engine.containers(run_id):
            if container["id"] not in accounts:
                try:
                    pid = engine.client.api.inspect_container(container["id"])["State"]["Pid"]
                except docker.errors.NotFound:  # removed meanwhile
                    continue
                accounts[container["id"]] = cgroup_cpu_seconds(pid)
            total += accounts[container["id"]]()
        return total
    return seconds


def cgroup_cpu_seconds(pid: int) -> Callable[[], float]:
    """A reader of the CPU seconds used by `pid`'s cgroup (a container's, for its main process):
    cgroup v1's cpuacct.usage, or cgroup v2's cpu.stat."""
    mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    groups = [line.split(":", 2) for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()]
    for _, controllers, path in groups:
        if "cpuacct" in controllers.split(","):
            root = next(m[1] for m in mounts if m[2] == "cgroup" and "cpuacct" in m[3].split(","))
            usage = Path(root + path) / "cpuacct.usage"
            return lambda: int(usage.read_text()) / 1e9
    for _, controllers, path in groups:
        if controllers == "":
            root = next(m[1] for m in mounts if m[2] == "cgroup2")
            stat = Path(root + path) / "cpu.stat"
            return lambda: int(next(line.split()[1] for line in stat.read_text().splitlines()
                                    if line.startswith("usage_usec "))) / 1e6
    raise RuntimeError(f"process {pid}: no cgroup accounts its CPU time (neither cpuacct nor cgroup v2 found)")
