"""Where a variant's checks run. Every target has the same small surface: `run()` a shell
command with a timeout, `put()` a folder in, `fetch()` a file out. The suites never know
which machine a command ran on. Each kind of target runs commands through one small object
with a uniform `run()`: pytest-testinfra's local backend here, the engine's exec API in a
container, Modal's exec in a sandbox.

A container (or sandbox) is shared by every pytest-xdist worker of a run: one worker starts it
and records its `handle()`, the others `attach()` to it, and the run's owner `release()`s it at
the end. Each worker keeps its files in a folder of its own (`slot`), and its own X display.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rendergate.core.assets import PROBES
from rendergate.core.diagnosis import Cause, CheckFailed, Diagnosis, Facts
from rendergate.core.driver_capabilities import asked
from rendergate.core.grammars import diagnose
from rendergate.core.known_causes import driver_file_missing, tool_missing
from rendergate.core.manifest import Variant
from rendergate.core.parsers import parse_nvidia_smi_csv, parse_probe_output
from rendergate.core.platforms import platform_of

TIMEOUT_EXIT = 124  # what `timeout` exits with when it stopped the command
KILLED_EXIT = 137  # ... and when the command ignored SIGTERM and had to be killed
# What run_after's wrapping says: a tool not on PATH, a step that failed (stderr), the end of a step's output.
_NO_TOOL = "rendergate: not on PATH: "
_STEP_FAILED = "rendergate: this step failed: "
_PART = "rendergate-end-of-part"
# Where checks keep their files in a container. Not under /tmp: gVisor (Modal's runtime, runsc)
# mounts its own tmpfs there, which the engine cannot see, so `docker cp` would find nothing.
CONTAINER_WORKDIR = "/var/tmp/rendergate"


def worker_slot() -> int:
    """This process's pytest-xdist worker number (gw3: 3), 0 without xdist."""
    number = os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:]
    return int(number) if number.isdigit() else 0


def worker_folder(slot: int) -> str:
    """Where worker `slot` keeps its files in a container."""
    return f"{CONTAINER_WORKDIR}/w{slot}"


def worker_count() -> int:
    """How many pytest-xdist workers the run has (1 without xdist)."""
    count = os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")
    return int(count) if count.isdigit() else 1


@dataclass(frozen=True)
class Result:
    command: str
    rc: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class Target:
    """Base for targets; subclasses say how to reach the machine, not what to run on it."""

    in_container = True

    def __init__(self, variant: Variant, host, workdir: str, python: str, default_timeout: float):
        self.variant = variant
        self.slot = worker_slot()
        self.workdir = workdir
        self.python = python
        self.default_timeout = default_timeout
        self._host = host
        self._facts: Facts | None = None
        self.transcript: list[Result] = []  # every command run, for the report's evidence
        self.memo: dict = {}  # per-target state shared by checks (a started Xorg, say)

    def __repr__(self):
        return f"<{type(self).__name__} {self.variant.name}>"

    def run(self, command: str, timeout: float | None = None, hung=None) -> Result:
        """Run a shell command; a command still running after `timeout` seconds is killed, and
        named in the line as `hung(result)` says (default: the command itself)."""
        limit = timeout or self.default_timeout
        wrapped = f"timeout -k 5 {limit:g} /bin/sh -c {shlex.quote(command)}"
        started = time.monotonic()
        out = self._host.run(wrapped)
        timed_out = out.rc == TIMEOUT_EXIT or (out.rc == KILLED_EXIT and time.monotonic() - started >= limit)
        result = Result(command, out.rc, out.stdout, out.stderr)
        self.transcript.append(result)
        if timed_out:
            what = hung(result) if hung else command
            raise CheckFailed(Cause.TIMEOUT, f"`{what[:80]}` did not finish within {limit:g} s and was killed")
        return result

    def check(self, command: str, what: str, timeout: float | None = None) -> Result:
        """run(), raising the diagnosed cause when the command fails."""
        result = self.run(command, timeout)
        if result.rc != 0:
            raise CheckFailed.of(diagnose(result.output, result.rc, what, self.facts()))
        return result

    def facts(self) -> Facts:
        """What classification needs to know about this target, probed once."""
        if self._facts is None:
            devices = self.run("ls /dev/nvidia[0-9]* 2>/dev/null").stdout.split()
            names = ()
            if devices:
                smi = self.run("nvidia-smi --query-gpu=name --format=csv,noheader")
                names = tuple(row["name"] for row in parse_nvidia_smi_csv(smi.stdout, ["name"])) if smi.rc == 0 else ()
            kernel_log = self.run("dmesg 2>/dev/null | head -n 3").stdout if self.in_container else ""
            self._facts = Facts(nvidia_devices_visible=bool(devices), gpu_names=names, container=self.in_container,
                                platform=platform_of(kernel_log), capabilities=tuple(sorted(asked(self.variant.settings.env["NVIDIA_DRIVER_CAPABILITIES"]))))
        return self._facts

    def run_after(self, command: str, tools: tuple[str, ...] = (), steps: tuple[tuple[str, str], ...] = (),
                  timeout: float | None = None) -> tuple[Result, list[str]]:
        """run(`command`) in the same round trip as what it needs first: `tools` on the target's
        PATH (one missing is diagnosed as such) and `steps`, (what, command) pairs run in order, each
        failure diagnosed as check() would, from its own output, naming its step. One exec where a
        check would make one per step (each costs a container about 70 ms). Returns the command's
        result (its own output) and each step's output."""
        q = shlex.quote
        parts = [f"command -v {q(tool)} >/dev/null || {{ echo {q(_NO_TOOL + tool)} >&2; exit 127; }}" for tool in tools]
        parts += [f"( {step}\n) || {{ s=$?; echo {q(f'{_STEP_FAILED}{n}')} >&2; exit $s; }}; echo {_PART}"
                  for n, (_, step) in enumerate(steps)]
        # A timeout names what was running: the first step whose end is not in the output, or the command.
        ran = [*(step for _, step in steps), command]
        whole = self.run("; ".join([*parts, command]), timeout, hung=lambda r: ran[min(r.stdout.count(_PART), len(steps))])
        said = whole.stdout.split(f"{_PART}\n")
        if whole.rc != 0:
            for tool in tools:
                if _NO_TOOL + tool in whole.stderr:
                    raise CheckFailed.of(tool_missing(tool, self.facts()))
            for n, (what, _) in enumerate(steps):
                if f"{_STEP_FAILED}{n}" in whole.stderr:
                    own = said[-1] + whole.stderr.replace(f"{_STEP_FAILED}{n}\n", "")
                    raise CheckFailed.of(diagnose(own, whole.rc, what, self.facts()))
        return Result(whole.command, whole.rc, said[-1], whole.stderr), said[:-1]

    def driver_files(self, names) -> set[str]:
        """Which of these NVIDIA driver files (libraries, binaries, ICD json) the target holds."""
        places = "/usr/lib /usr/lib64 /usr/local/nvidia /usr/share/vulkan /etc/vulkan /usr/share/glvnd"
        script = "; ".join(f"(ldconfig -p | grep -qF {shlex.quote(n)} || command -v {shlex.quote(n)} || "
                           f"find {places} -name {shlex.quote(n)} 2>/dev/null | grep -q .) >/dev/null && echo {shlex.quote(n)}"
                           for n in names)
        return set(self.run(script).stdout.split())

    def baked_driver_files(self, names, timeout: float | None = None) -> list[tuple[str, str, str]]:
        """The NVIDIA driver files among `names` that the image itself carries on its library
        path or PATH, rather than the container toolkit injecting them (injected files are bind
        mounts: /proc/self/mountinfo lists them): (name, the file it resolves to, its package).
        NVIDIA's CUDA forward-compatibility libraries (cuda-compat, under /usr/local/cuda*/compat)
        are meant to be in the image, and are not counted. Each listing must succeed: a broken
        tool (ldconfig, cat) fails the check, never reads as "nothing baked". `timeout`: for each
        command (default: the run's check timeout)."""
        programs = "; ".join(f"p=$(command -v {shlex.quote(n)}) && echo {shlex.quote(n)} \"$p\"" for n in names if "." not in n)
        listed, (mountinfo, cache) = self.run_after(programs or ":", steps=(
            ("cat /proc/self/mountinfo", "cat /proc/self/mountinfo"),
            ("ldconfig -p (the library path)", "ldconfig -p 2>/dev/null || /sbin/ldconfig -p")), timeout=timeout)
        mounts = {line.split()[4] for line in mountinfo.splitlines() if len(line.split()) > 4}
        found = [(m.group(1), m.group(2)) for m in re.finditer(r"^\s*(\S+) .* => (\S+)$", cache, re.M) if m.group(1) in names]
        found += [tuple(line.split(" ", 1)) for line in listed.stdout.splitlines() if " " in line]
        baked = []
        for name, path in sorted(set(found)):
            real = self.check(f"readlink -f {shlex.quote(path)}", f"readlink -f {path}", timeout).stdout.strip()
            if real in mounts or re.search(r"/cuda[^/]*/compat/", real):
                continue
            owned = re.search(r"^([a-z0-9][a-z0-9+.-]*)(?::[a-z0-9]+)?: /", self.run(f"dpkg -S {shlex.quote(real)} 2>/dev/null", timeout).stdout, re.M)
            baked.append((name, real, owned.group(1) if owned else ""))  # not a diversion's line
        return sorted(set(baked))

    def missing_driver_file(self, name: str) -> Diagnosis | None:
        """Why a file the NVIDIA container toolkit should inject is absent, or None if present."""
        return None if self.driver_files([name]) else driver_file_missing(name, self.facts())

    def run_probe(self, name: str, *args: str, timeout: float | None = None) -> Result:
        """Run rendergate/probes/<name>.py with the target's Python, whatever its outcome."""
        self._ensure_probes()
        argv = " ".join(shlex.quote(a) for a in args)
        result = self.run(f"PYTHONPATH={self.workdir}/lib {self.python} {self.workdir}/probes/{name}.py {argv}", timeout)
        if result.rc == 127 and self.run(f"command -v {shlex.quote(self.python)}").rc != 0:  # asked only then: one exec less
            raise CheckFailed(Cause.TOOL_MISSING, f"{self.python} not found in {self.name}: the probes run with the "
                                                  f"Python that run.python of {self.variant.manifest} names; set it to "
                                                  "the image's interpreter that has the modules checked (manim, bpy)")
        return result

    def probe(self, name: str, *args: str, timeout: float | None = None) -> dict:
        """run_probe(): its JSON result, or the diagnosed failure."""
        result = self.run_probe(name, *args, timeout=timeout)
        if result.rc != 0:
            raise CheckFailed.of(diagnose(result.output, result.rc, f"{self.python} {name}.py (the {name} probe)", self.facts()))
        return parse_probe_output(result.stdout)

    def _ensure_probes(self) -> None:
        if self.memo.get("probes"):
            return
        import pynvml  # shipped into the target: images need not install NVML bindings

        bundle = Path(tempfile.mkdtemp(prefix="rendergate-probes-"))
        try:
            shutil.copytree(PROBES, bundle / "probes",
                            ignore=shutil.ignore_patterns("__pycache__"))
            (bundle / "lib").mkdir()
            shutil.copy(pynvml.__file__, bundle / "lib" / "pynvml.py")
            self.put(bundle, self.workdir)
        finally:
            shutil.rmtree(bundle)
        self.memo["probes"] = True

    @property
    def name(self) -> str:
        """What the checks run in, as a failure names it."""
        return "the target"

    def put(self, local_dir: Path, remote_dir: str) -> None:
        raise NotImplementedError

    def fetch(self, remote_path: str) -> bytes:
        raise NotImplementedError

    def handle(self) -> dict:
        """What another worker needs to attach() to this target (JSON): how to reach it, and what
        was probed of it once, so that no worker probes it again."""
        return {"facts": asdict(self.facts())}

    def _adopt(self, handle: dict) -> None:
        """Take over what the opening worker probed (see handle())."""
        self._facts = Facts(**{k: tuple(v) if isinstance(v, list) else v for k, v in handle["facts"].items()})

    def image_info(self) -> dict | None:
        """The image the checks run in, as verdicts name it; None where there is no image (the host)."""
        return None

    def image_config(self):
        """The image's config, layers and sizes as its engine holds them (core.contents.ImageConfig);
        None where no engine holds the image (the host, a Modal sandbox)."""
        return None

    def started(self) -> dict:
        """What a verdict counts of this target's start: {"container": name}, {"sandbox": {...}}."""
        return {}

    def close(self) -> None:
        """Release what this process holds (not the shared container: release() does); safe twice."""


