"""Where a variant's checks run. Every target has the same small surface: `run()` a shell
command with a timeout, `put()` a folder in, `fetch()` a file out. The suites never know
which machine a command ran on. Commands go through pytest-testinfra's backends.

A container (or sandbox) is shared by every pytest-xdist worker of a run: one worker starts it
and records its `handle()`, the others `attach()` to it, and the run's owner `release()`s it at
the end. Each worker keeps its files in a folder of its own (`slot`), and its own X display.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import shlex
import shutil
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import docker.errors
import testinfra

from rendergate.core.advice import checked
from rendergate.core.assets import PROBES
from rendergate.core.diagnosis import Cause, CheckFailed, Diagnosis, Facts, diagnose, driver_file_missing, last_line, tool_missing
from rendergate.core.driver_capabilities import asked
from rendergate.engines.docker_engine import Engine, EngineError
from rendergate.core.manifest import Variant
from rendergate.core.parsers import parse_nvidia_smi_csv, parse_probe_output
from rendergate.core.platforms import platform_of

TIMEOUT_EXIT = 124  # what `timeout` exits with when it stopped the command
KILLED_EXIT = 137  # ... and when the command ignored SIGTERM and had to be killed
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
                                platform=platform_of(kernel_log), capabilities=tuple(sorted(asked(self.variant.settings.env["NVIDIA_DRIVER_CAPABILITIES"]))))
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

    def baked_driver_files(self, names) -> list[tuple[str, str, str]]:
        """The NVIDIA driver files among `names` that the image itself carries on its library
        path or PATH, rather than the container toolkit injecting them (injected files are bind
        mounts: /proc/self/mountinfo lists them): (name, the file it resolves to, its package).
        NVIDIA's CUDA forward-compatibility libraries (cuda-compat, under /usr/local/cuda*/compat)
        are meant to be in the image, and are not counted. Each listing must succeed: a broken
        tool (ldconfig, cat) fails the check, never reads as "nothing baked"."""
        mounts = {line.split()[4] for line in self.check("cat /proc/self/mountinfo", "cat /proc/self/mountinfo")
                  .stdout.splitlines() if len(line.split()) > 4}
        cache = self.check("ldconfig -p 2>/dev/null || /sbin/ldconfig -p", "ldconfig -p (the library path)").stdout
        found = [(m.group(1), m.group(2)) for m in re.finditer(r"^\s*(\S+) .* => (\S+)$", cache, re.M) if m.group(1) in names]
        programs = self.run("; ".join(f"p=$(command -v {shlex.quote(n)}) && echo {shlex.quote(n)} \"$p\"" for n in names
                                      if "." not in n)).stdout
        found += [tuple(line.split(" ", 1)) for line in programs.splitlines() if " " in line]
        baked = []
        for name, path in sorted(set(found)):
            real = self.check(f"readlink -f {shlex.quote(path)}", f"readlink -f {path}").stdout.strip()
            if real in mounts or re.search(r"/cuda[^/]*/compat/", real):
                continue
            owned = re.search(r"^([a-z0-9][a-z0-9+.-]*)(?::[a-z0-9]+)?: /", self.run(f"dpkg -S {shlex.quote(real)} 2>/dev/null").stdout, re.M)
            baked.append((name, real, owned.group(1) if owned else ""))  # not a diversion's line
        return sorted(set(baked))

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
            raise CheckFailed.of(diagnose(result.output, result.rc, f"{self.python} {name}.py (the {name} probe)", self.facts()))
        return parse_probe_output(result.stdout)

    def _ensure_probes(self) -> None:
        if self.memo.get("probes"):
            return
        if self.run(f"command -v {shlex.quote(self.python)}").rc != 0:
            raise CheckFailed(Cause.TOOL_MISSING, f"{self.python} not found in {self.name}: the probes run with the "
                                                  f"Python that run.python of {self.variant.manifest} names; set it to "
                                                  "the image's interpreter that has the modules checked (manim, bpy)")
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

    def started(self) -> dict:
        """What a verdict counts of this target's start: {"container": name}, {"sandbox": {...}}."""
        return {}

    def close(self) -> None:
        """Release what this process holds (not the shared container: release() does); safe twice."""


class LocalTarget(Target):
    """This machine itself (a variant that says `host = true`)."""

    in_container = False

    def __init__(self, variant: Variant, default_timeout: float):
        super().__init__(variant, testinfra.get_host("local://"), tempfile.mkdtemp(prefix="rendergate-"),
                         sys.executable, default_timeout)

    @property
    def name(self) -> str:
        return "this host"

    def put(self, local_dir: Path, remote_dir: str) -> None:
        shutil.copytree(local_dir, remote_dir, dirs_exist_ok=True)

    def fetch(self, remote_path: str) -> bytes:
        return Path(remote_path).read_bytes()

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


def _image_info(ref: str, image) -> dict:
    """An image of the engine as verdicts name it."""
    return {"ref": ref, "digest": image.id, "repo_digests": image.attrs.get("RepoDigests", [])}


PREPARED_WITH = ("id",)  # what a target's first command runs besides the shell (DockerTarget._prepare)


def _shell_fault(container, said: str) -> Diagnosis | None:
    """Why the shell, or a tool it names in `said` ("id: Permission denied"), does not run, read
    from outside (there is no shell inside to ask): the file it leads to, and what dpkg's own
    lists and checksums say of it. None where no package ships it (an image built without a
    shell: it needs one added, not one repaired)."""
    try:
        stream, _stat = container.get_archive("/var/lib/dpkg/info")
        info = tarfile.open(fileobj=io.BytesIO(b"".join(stream)))
    except (docker.errors.NotFound, tarfile.TarError):
        return None
    lists = {os.path.basename(m.name)[:-len(".list")]: set(info.extractfile(m).read().decode(errors="replace").splitlines())
             for m in info.getmembers() if m.name.endswith(".list") and m.isfile()}
    tools = re.findall(r"(?:^|: )([\w.+-]+): (?:Permission denied|not found|Exec format error)", said, re.M)
    for path in dict.fromkeys(["/bin/sh", *(f"/usr/bin/{tool}" for tool in [*tools, *PREPARED_WITH])]):
        found = _packaged_file(container, path, info, lists)
        if found:
            return found
    return None


def _packaged_file(container, path: str, info: tarfile.TarFile, lists: dict[str, set[str]]) -> Diagnosis | None:
    """What is wrong with the file `path` leads to (its links followed), by its package's list
    and checksums; None when nothing is, or no package ships it."""
    chain = [path]
    for _ in range(8):
        try:
            stream, _stat = container.get_archive(path)
            member, data = _one_file(b"".join(stream))
        except docker.errors.NotFound:
            member, data = None, b""
        if member is None or not member.issym():
            break
        path = os.path.normpath(os.path.join(os.path.dirname(path), member.linkname))
        chain.append(path)

    def owner_of(path: str) -> str | None:  # merged /usr: dash lists /bin/sh, the image has /usr/bin/sh
        return next((name for name, listed in lists.items() if {path, path.removeprefix("/usr")} & listed), None)

    owner = owner_of(path)
    if owner is None and member is None:  # a packaged link that leads nowhere (ln -sf /bin/zsh /bin/sh)
        linked = next(((link, found) for link in chain[:-1] if (found := owner_of(link))), None)
        if linked:
            package = linked[1].split(":")[0]
            return Diagnosis(Cause.TOOL_MISSING, f"{package}'s {linked[0]} leads to {path}, which is not there: reinstall "
                                                 f"{package} (apt-get install --reinstall {package})")
    if owner is None:
        return None
    names = {path, path.removeprefix("/usr")}
    package = owner.split(":")[0]
    fix = f"reinstall {package} (apt-get install --reinstall {package})"
    if member is None:
        return Diagnosis(Cause.TOOL_MISSING, f"{package} is installed but its file {path} is missing: {fix}")
    try:
        sums = info.extractfile(f"info/{owner}.md5sums").read().decode(errors="replace")
    except KeyError:
        sums = ""
    want = dict(reversed(line.split(None, 1)) for line in sums.splitlines() if len(line.split(None, 1)) == 2)
    expected = next((want[n.lstrip("/")] for n in names if n.lstrip("/") in want), None)
    if not data or (expected and hashlib.md5(data).hexdigest() != expected):
        return Diagnosis(Cause.FILE_DAMAGED, f"{package} is installed but its file {path} is not the package's own "
                                             f"(it differs from its checksum: damaged or replaced): {fix}")
    if not member.mode & 0o111:
        return Diagnosis(Cause.FILE_DAMAGED, f"{path} of {package} is not executable: restore its mode (chmod +x) or {fix}")
    return None


class _RootShell:
    """A container's shell as root, before its target exists: what advice asks the image through."""

    def __init__(self, container):
        self.container = container

    def run(self, command: str, timeout: float | None = None) -> Result:
        code, out = self.container.exec_run(["/bin/sh", "-c", f"timeout {timeout or 60:g} /bin/sh -c {shlex.quote(command)}"],
                                            user="0", demux=True)
        stdout, stderr = (part.decode(errors="replace") if part else "" for part in out)
        return Result(command, code, stdout, stderr)


def _one_file(archive: bytes) -> tuple[tarfile.TarInfo | None, bytes]:
    """The one entry of an archive the engine gave of a path, and its bytes."""
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        member = next(iter(tar.getmembers()), None)
        data = tar.extractfile(member).read() if member is not None and member.isfile() else b""
    return member, data


class DockerTarget(Target):
    """A running container of the variant's image, as the image's own user. Started by the engine
    (entrypoint replaced by the keep-alive command), shared by the run's workers."""

    def __init__(self, variant: Variant, container, default_timeout: float, user: tuple[int, int] | None = None):
        self.container = container
        super().__init__(variant, testinfra.get_host(f"docker://{container.id}"),
                         worker_folder(worker_slot()), variant.settings.python, default_timeout)
        self.uid, self.gid = user or self._prepare()

    @property
    def name(self) -> str:
        return self.image_ref

    @property
    def image_ref(self) -> str:
        tags = self.container.image.tags
        return self.container.attrs.get("Config", {}).get("Image") or (tags[0] if tags else self.container.image.id)

    def started(self) -> dict:
        return {"container": self.container.name}

    def image_info(self) -> dict:
        return _image_info(self.image_ref, self.container.image)

    @classmethod
    def start(cls, engine: Engine, variant: Variant, image: str, run_id: str, owner: str, log_dir: Path,
              default_timeout: float, gpus: bool = False, runtime: str | None = None) -> "DockerTarget":
        """A new container of `image`, labelled as the run's (owner: the run's controlling process)."""
        try:
            container = engine.start(variant, image, run_id, owner, gpus=gpus, log_dir=log_dir, runtime=runtime)
        except EngineError as e:
            try:
                known = _image_info(image, engine.client.images.get(image))
            except docker.errors.DockerException:  # not in the engine: no image to name
                known = None
            raise EngineError(str(e), known, e.cause) from None
        try:
            return cls(variant, container, default_timeout)
        except EngineError as e:
            engine.remove(container.id)
            raise EngineError(str(e), _image_info(image, container.image), e.cause) from None

    @classmethod
    def attach(cls, variant: Variant, handle: dict, default_timeout: float) -> "DockerTarget":
        """The container another worker started (and prepared) for the variant."""
        try:
            container = Engine().client.containers.get(handle["container"])
        except docker.errors.NotFound:
            raise EngineError(f"the container of {variant.name} ({handle['container'][:12]}) is gone: removed "
                              "while the run was using it") from None
        target = cls(variant, container, default_timeout, user=(handle["uid"], handle["gid"]))
        target._adopt(handle)
        return target

    @staticmethod
    def release(handle: dict) -> None:
        Engine().remove(handle["container"])

    def handle(self) -> dict:
        return {**super().handle(), "container": self.container.id, "uid": self.uid, "gid": self.gid}

    def _prepare(self) -> tuple[int, int]:
        """The image's user, and every worker's folder, made by root and owned by that user (a
        non-root image's user may not create them): everything a check writes goes there."""
        for _ in range(3):  # a container just started has answered an exec with nothing at all (a busy host)
            code, out = self.container.exec_run(["/bin/sh", "-c", "id -u && id -g"])
            if code != 0 or out.strip():
                break
            time.sleep(0.5)
        ids = out.decode(errors="replace").split()
        if code != 0 or len(ids) != 2 or not all(i.isdigit() for i in ids):
            text = out.decode(errors="replace")
            if self.container.exec_run(["/bin/sh", "-c", "exit 0"], user="0")[0] == 0:  # the shell runs: `id` does not
                found = checked(diagnose(text, code, "id -u (the target's first command)", Facts()), _RootShell(self.container))
                raise EngineError(f"{self.image_ref} cannot run `id` in its shell: {found.message}", cause=found.cause)
            said = f"{self.image_ref} has no usable /bin/sh ({last_line(text)})"
            broken = _shell_fault(self.container, text)
            if broken:
                raise EngineError(f"{said}: {broken.message}", cause=broken.cause)
            raise EngineError(f"{said}: rendergate runs every check through /bin/sh and coreutils inside the image; "
                              "add a shell (e.g. busybox) to the image to validate it")
        uid, gid = int(ids[0]), int(ids[1])
        folders = " ".join(worker_folder(n) for n in range(max(worker_count(), self.slot + 1)))
        # As uid 0, not "root": an image without /etc/passwd (FROM scratch) has no user of that name.
        code, out = self.container.exec_run(["/bin/sh", "-c", f"mkdir -p {folders} && chown {uid}:{gid} {folders}"],
                                            user="0")
        if code != 0:
            raise EngineError(f"cannot make {self.workdir} in {self.image_ref}: {last_line(out.decode(errors='replace'))}")
        return uid, gid

    def put(self, local_dir: Path, remote_dir: str) -> None:
        """Copy a folder in, owned by the image's user (so that checks may write beside it)."""
        self.run(f"mkdir -p {shlex.quote(remote_dir)}")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for path in sorted(local_dir.rglob("*")):
                info = tar.gettarinfo(path, arcname=str(path.relative_to(local_dir)))
                info.uid, info.gid, info.uname, info.gname = self.uid, self.gid, "", ""
                if info.isreg():
                    with path.open("rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
        self.container.put_archive(remote_dir, buf.getvalue())

    def fetch(self, remote_path: str) -> bytes:
        try:
            stream, _ = self.container.get_archive(remote_path)
        except docker.errors.NotFound:
            raise CheckFailed(Cause.OUTPUT_INVALID, f"{remote_path}: no such file in {self.name} (the command that "
                                                    "should have written it did not)") from None
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.next()
            return tar.extractfile(member).read()
