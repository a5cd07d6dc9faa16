"""Where a variant's checks run. Every target has the same small surface: `run()` a shell
command with a timeout, `put()` a folder in, `fetch()` a file out. The suites never know
which machine a command ran on. Commands go through pytest-testinfra's backends.
"""
from __future__ import annotations

import io
import shlex
import shutil
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import testinfra

from .diagnosis import (Cause, CheckFailed, Diagnosis, Facts, diagnose, driver_file_missing, platform_of,
                        tool_missing)
from .capabilities import asked
from .engine import owner_label
from .manifest import Variant
from .parsers import parse_nvidia_smi_csv, parse_probe_output

TIMEOUT_EXIT = 124  # what `timeout` exits with when it stopped the command
KILLED_EXIT = 137  # ... and when the command ignored SIGTERM and had to be killed
# Where checks keep their files in a container. Not under /tmp: gVisor (Modal's runtime, runsc)
# mounts its own tmpfs there, which the engine cannot see, so `docker cp` would find nothing.
CONTAINER_WORKDIR = "/var/tmp/rendergate"


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
        self.workdir = workdir
        self.python = python
        self.default_timeout = default_timeout
        self._host = host
        self._facts: Facts | None = None
        self.transcript: list[Result] = []  # every command run, for the report's evidence
        self.memo: dict = {}  # per-target state shared by checks (a started Xorg, say)

    def __repr__(self):
        return f"<{type(self).__name__} {self.variant.name}>"

    def run(self, command: str, timeout: float | None = None) -> Result:
        """Run a shell command; a command still running after `timeout` seconds is killed."""
        limit = timeout or self.default_timeout
        wrapped = f"timeout -k 5 {limit:g} /bin/sh -c {shlex.quote(command)}"
        started = time.monotonic()
        out = self._host.run(wrapped)
        timed_out = out.rc == TIMEOUT_EXIT or (out.rc == KILLED_EXIT and time.monotonic() - started >= limit)
        result = Result(command, out.rc, out.stdout, out.stderr)
        self.transcript.append(result)
        if timed_out:
            raise CheckFailed(Cause.TIMEOUT, f"`{command[:80]}` did not finish within {limit:g} s and was killed")
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
                                platform=platform_of(kernel_log), capabilities=tuple(sorted(asked(",".join(self.variant.driver_capabilities)))))
        return self._facts

    def require_tool(self, name: str) -> None:
        """Raise the diagnosed cause when a command-line tool is not on the target's PATH."""
        if self.run(f"command -v {shlex.quote(name)}").rc != 0:
            raise CheckFailed.of(tool_missing(name, self.facts()))

    def driver_files(self, names) -> set[str]:
        """Which of these NVIDIA driver files (libraries, binaries, ICD json) the target holds."""
        places = "/usr/lib /usr/lib64 /usr/local/nvidia /usr/share/vulkan /etc/vulkan /usr/share/glvnd"
        script = "; ".join(f"(ldconfig -p | grep -qF {shlex.quote(n)} || command -v {shlex.quote(n)} || "
                           f"find {places} -name {shlex.quote(n)} 2>/dev/null | grep -q .) >/dev/null && echo {shlex.quote(n)}"
                           for n in names)
        return set(self.run(script).stdout.split())

    def missing_driver_file(self, name: str) -> Diagnosis | None:
        """Why a file the NVIDIA container toolkit should inject is absent, or None if present."""
        return None if self.driver_files([name]) else driver_file_missing(name, self.facts())

    def run_probe(self, name: str, *args: str, timeout: float | None = None) -> Result:
        """Run rendergate/probes/<name>.py with the target's Python, whatever its outcome."""
        self._ensure_probes()
        argv = " ".join(shlex.quote(a) for a in args)
        return self.run(f"PYTHONPATH={self.workdir}/lib {self.python} {self.workdir}/probes/{name}.py {argv}", timeout)

    def probe(self, name: str, *args: str, timeout: float | None = None) -> dict:
        """run_probe(): its JSON result, or the diagnosed failure."""
        result = self.run_probe(name, *args, timeout=timeout)
        if result.rc != 0:
            raise CheckFailed.of(diagnose(result.output, result.rc, f"the {name} probe", self.facts()))
        return parse_probe_output(result.stdout)

    def _ensure_probes(self) -> None:
        if self.memo.get("probes"):
            return
        import pynvml  # shipped into the target: images need not install NVML bindings

        bundle = Path(tempfile.mkdtemp(prefix="rendergate-probes-"))
        try:
            shutil.copytree(Path(__file__).parent / "probes", bundle / "probes",
                            ignore=shutil.ignore_patterns("__pycache__"))
            (bundle / "lib").mkdir()
            shutil.copy(pynvml.__file__, bundle / "lib" / "pynvml.py")
            self.put(bundle, self.workdir)
        finally:
            shutil.rmtree(bundle)
        self.memo["probes"] = True

    def put(self, local_dir: Path, remote_dir: str) -> None:
        raise NotImplementedError

    def fetch(self, remote_path: str) -> bytes:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the target holds; safe to call twice."""


class LocalTarget(Target):
    """This machine itself."""

    in_container = False

    def __init__(self, variant: Variant, default_timeout: float):
        super().__init__(variant, testinfra.get_host("local://"), tempfile.mkdtemp(prefix="rendergate-"),
                         sys.executable, default_timeout)

    def put(self, local_dir: Path, remote_dir: str) -> None:
        shutil.copytree(local_dir, remote_dir, dirs_exist_ok=True)

    def fetch(self, remote_path: str) -> bytes:
        return Path(remote_path).read_bytes()

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


class DockerTarget(Target):
    """A running container of the variant's image (started and removed by the engine)."""

    def __init__(self, variant: Variant, container, default_timeout: float):
        self.container = container
        super().__init__(variant, testinfra.get_host(f"docker://{container.id}"), CONTAINER_WORKDIR,
                         variant.run.get("python", "python3"), default_timeout)

    @classmethod
    def start(cls, engine, variant: Variant, image: str, run_id: str, log_dir: Path, default_timeout: float,
              gpus: bool = False, runtime: str | None = None) -> "DockerTarget":
        """A new container of `image`, owned by this process, as the variant's target."""
        container = engine.start(variant, image, run_id, owner_label(), gpus=gpus, log_dir=log_dir,
                                 runtime=runtime)
        return cls(variant, container, default_timeout)

    def put(self, local_dir: Path, remote_dir: str) -> None:
        self.run(f"mkdir -p {shlex.quote(remote_dir)}")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for path in sorted(local_dir.rglob("*")):
                tar.add(path, arcname=str(path.relative_to(local_dir)), recursive=False)
        self.container.put_archive(remote_dir, buf.getvalue())

    def fetch(self, remote_path: str) -> bytes:
        stream, _ = self.container.get_archive(remote_path)
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.next()
            return tar.extractfile(member).read()

    def close(self) -> None:
        try:
            self.container.remove(force=True)
        except Exception:  # already gone (swept, or the engine stopped): nothing left to release
            pass
