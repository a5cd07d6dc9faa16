"""When a container's shell cannot run (the first command a target runs is through /bin/sh),
what is wrong with it is read from outside: the engine's archive of the file and the image's
dpkg lists and checksums, so that the line names the damaged file and its package."""
from __future__ import annotations

import hashlib
import io
import os
import re
import shlex
import tarfile

from rendergate.core.diagnosis import Cause, Diagnosis
from rendergate.engines.docker_engine import docker_sdk
from rendergate.engines.targets import Result


def _one_file(archive: bytes) -> tuple[tarfile.TarInfo | None, bytes]:
    """The one entry of an archive the engine gave of a path, and its bytes."""
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        member = next(iter(tar.getmembers()), None)
        data = tar.extractfile(member).read() if member is not None and member.isfile() else b""
    return member, data


PREPARED_WITH = ("id",)  # what a target's first command runs besides the shell (DockerTarget._prepare)


def shell_fault(container, said: str) -> Diagnosis | None:
    """Why the shell, or a tool it names in `said` ("id: Permission denied"), does not run, read
    from outside (there is no shell inside to ask): the file it leads to, and what dpkg's own
    lists and checksums say of it. None where no package ships it (an image built without a
    shell: it needs one added, not one repaired)."""
    docker = docker_sdk()  # where a container is at hand: not when the plugin imports this module
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
    docker = docker_sdk()
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


class RootShell:
    """A container's shell as root, before its target exists: what advice asks the image through."""

    def __init__(self, container):
        self.container = container

    def run(self, command: str, timeout: float | None = None) -> Result:
        code, out = self.container.exec_run(["/bin/sh", "-c", f"timeout {timeout or 60:g} /bin/sh -c {shlex.quote(command)}"],
                                            user="0", demux=True)
        stdout, stderr = (part.decode(errors="replace") if part else "" for part in out)
        return Result(command, code, stdout, stderr)
