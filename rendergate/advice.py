"""Advice held to the image before it is given: a diagnosis that says "install P" is checked
against what the image holds, so that no line advises a state the image is already in.

A diagnosis that blames something missing names it (Diagnosis.missing: a library, a program, a
data file, a Python module). Before the line is shown, the image is asked: which installed
package's file list names it (dpkg's own database: /var/lib/dpkg/info/*.list, which still names a
file that was deleted), whether that file is there and matches the package's checksum
(*.md5sums), which wheel's RECORD names it; for a Python module, which installed distribution
provides it (its dist-info). The line then says what is true of the image: "libcairo2 is
installed but its file /usr/lib/.../libcairo.so.2 is missing: reinstall libcairo2", "... differs
from the package's checksum (damaged)", "reinstall the wheel bpy", "pip install pycairo".
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, replace

from .diagnosis import Cause, Diagnosis, Missing
from .parsers import parse_probe_output

# Where an import name is not its distribution's name and the image cannot say (not installed):
# the usual ones of render images.
DISTRIBUTION_OF = {"cairo": "pycairo", "PIL": "Pillow", "cv2": "opencv-python", "yaml": "PyYAML", "OpenGL": "PyOpenGL",
                   "skimage": "scikit-image", "sklearn": "scikit-learn", "gi": "PyGObject", "pydub": "pydub"}
# Debian packages of the programs the suites run, for a program no installed package names.
PACKAGE_OF_TOOL = {"ffmpeg": "ffmpeg", "ffprobe": "ffmpeg", "latex": "texlive-latex-base", "dvisvgm": "dvisvgm",
                   "xelatex": "texlive-xetex", "glxinfo": "mesa-utils", "glxgears": "mesa-utils", "eglinfo": "mesa-utils-bin",
                   "vulkaninfo": "vulkan-tools", "xdpyinfo": "x11-utils", "x11vnc": "x11vnc", "Xorg": "xserver-xorg-core",
                   "xwd": "x11-apps", "xwdtopnm": "netpbm", "pnmtopng": "netpbm"}


@dataclass(frozen=True)
class Packaged:
    """A file an installed package's file list names, and what became of it in the image."""
    package: str
    path: str
    state: str  # "ok", "gone" (deleted), "damaged" (differs from the package's checksum, or empty)


def _escaped(name: str) -> str:
    return re.sub(r"([.\[\]()*+?{}|^$\\])", r"\\\1", name)  # ERE's specials only (grep warns of others)


def _pattern(names: list[str]) -> str:
    """A grep -E pattern for a path ending in one of `names` (a library also by its versioned file
    name), or that very path."""
    if len(names) == 1 and names[0].startswith("/"):
        return f"^{_escaped(names[0])}$"
    versioned = "(\\.[0-9]+)*" if any(".so" in name for name in names) else ""
    return f"/({'|'.join(map(_escaped, names))}){versioned}$"


def _packaged_script(pattern: str, lists: str, most: int) -> str:
    """Shell (busybox's too): each file of the installed packages' lists `lists` (a glob) that
    matches `pattern` (grep -E; at most `most` of each list), whether it is there, and whether it
    matches the package's md5sum."""
    return (f"for list in /var/lib/dpkg/info/{lists}.list; do [ -f \"$list\" ] || continue; "
            f"grep -E {shlex.quote(pattern)} \"$list\" 2>/dev/null | head -{most} | while read -r path; do "
            "pkg=${list##*/}; pkg=${pkg%.list}; "
            "if [ -d \"$path\" ]; then continue; fi; "
            "if [ ! -e \"$path\" ]; then echo \"gone $pkg $path\"; continue; fi; "
            "sums=/var/lib/dpkg/info/$pkg.md5sums; want=$(grep \" ${path#/}$\" \"$sums\" 2>/dev/null | cut -d' ' -f1); "
            "if [ ! -s \"$path\" ]; then echo \"damaged $pkg $path\"; "
            "elif [ -n \"$want\" ] && [ \"$(md5sum \"$path\" | cut -d' ' -f1)\" != \"$want\" ]; then echo \"damaged $pkg $path\"; "
            "else echo \"ok $pkg $path\"; fi; done; done")


def packaged(target, pattern: str, lists: str = "*", most: int = 3) -> list[Packaged]:
    """The files of installed packages (those of `lists`) whose paths match `pattern`, with the
    state of each: dpkg's lists still name a file that was deleted."""
    result = target.run(_packaged_script(pattern, lists, most), timeout=60)
    found = []
    for line in result.stdout.splitlines():
        state, _, rest = line.partition(" ")
        package, _, path = rest.partition(" ")
        if state in ("ok", "gone", "damaged") and path:
            found.append(Packaged(package.split(":")[0], path, state))
    return found


def _reinstall(diagnosis: Diagnosis, missing: Missing, broken: list[Packaged]) -> Diagnosis:
    """The line for a package that is installed but one of whose files is gone or is not its own:
    reinstall it. A damaged file is `file-damaged`, unless the diagnosis already says what kind
    of wrong it is (a library of the wrong version)."""
    p = broken[0]
    what = "missing" if p.state == "gone" else "not the package's own (it differs from its checksum: damaged, replaced, " \
                                                "or of another version)"
    more = f" (and {len(broken) - 1} more)" if len(broken) > 1 else ""
    cause = Cause.FILE_DAMAGED if p.state == "damaged" and diagnosis.cause is not Cause.LIBRARY_WRONG_VERSION else diagnosis.cause
    return replace(diagnosis, cause=cause, message=f"{missing.said}: {p.package} is installed but its file {p.path} is "
                                                  f"{what}{more}: reinstall {p.package} (apt-get install --reinstall {p.package})")


def _wheel_of(target, name: str) -> str | None:
    """The installed wheel whose RECORD names a file `name` (a library a wheel bundles), if any."""
    result = target.run_probe("distributions", "--file", name, timeout=60)
    owners = parse_probe_output(result.stdout)["owners"] if result.rc == 0 else []
    return owners[0]["dist"] if owners else None


def _distributions(target, module: str) -> list[dict]:
    """The installed distributions that provide the top-level package of `module`, each with the
    files of it its RECORD names but the image lacks."""
    result = target.run_probe("distributions", "--module", module, timeout=60)
    return parse_probe_output(result.stdout)["owners"] if result.rc == 0 else []


def checked(diagnosis: Diagnosis, target) -> Diagnosis:
    """The diagnosis with its advice held to the image; unchanged when it blames nothing missing,
    or when the image cannot be asked."""
    missing = diagnosis.missing
    if missing is None:
        return diagnosis
    try:
        if missing.kind == "needs":
            return _needs(diagnosis, target, missing)
        if missing.kind == "module":
            return _module(diagnosis, target, missing)
        if missing.kind == "package":
            return _package(diagnosis, target, missing)
        return _file(diagnosis, target, missing)
    except Exception:  # the image cannot be asked (no shell left, no Python): the line as classified
        return diagnosis


def _file(diagnosis: Diagnosis, target, missing: Missing) -> Diagnosis:
    found = packaged(target, _pattern([missing.name]))
    broken = [p for p in found if p.state != "ok"]
    if broken:
        return _reinstall(diagnosis, missing, broken[:1])
    if found:  # every file of it there and intact: installing it again changes nothing
        p = found[0]
        return replace(diagnosis, message=f"{missing.said}: {p.path} of {p.package} is there and intact, "
                                          "yet not found where it is looked for: check the search path (PATH, the "
                                          "loader's path: ldconfig, LD_LIBRARY_PATH) and its architecture")
    wheel = _wheel_of(target, missing.name) if missing.kind == "library" else None
    if wheel:
        return replace(diagnosis, message=f"{missing.said}: the wheel {wheel} bundles it: reinstall {wheel} "
                                          f"(pip install --force-reinstall {wheel})")
    if missing.kind == "tool" and missing.name in PACKAGE_OF_TOOL:
        package = PACKAGE_OF_TOOL[missing.name]
        return replace(diagnosis, message=f"{missing.said}: install {package} (it ships {missing.name})")
    return diagnosis


def _needs(diagnosis: Diagnosis, target, missing: Missing) -> Diagnosis:
    """A file that misses a symbol: which of the libraries it loads (ldd) is not its package's own file."""
    loaded = re.findall(r"^\s*(\S+) => /", target.run(f"ldd {shlex.quote(missing.name)}", timeout=60).stdout, re.M)
    replaced = [p for p in packaged(target, _pattern(sorted(set(loaded))), most=1000) if p.state == "damaged"] if loaded else []
    return _reinstall(diagnosis, missing, replaced[:1]) if replaced else diagnosis


def _package(diagnosis: Diagnosis, target, missing: Missing) -> Diagnosis:
    """Advice to install a package: held to whether it is installed, and if so, to its files."""
    files = [p for p in packaged(target, ".", f"{missing.name}*", most=10000) if p.package == missing.name]
    if not files:  # not installed: the advice stands
        return diagnosis
    broken = [p for p in files if p.state != "ok"]
    if broken:
        return _reinstall(diagnosis, missing, broken)
    return replace(diagnosis, message=f"{missing.said}: {missing.name} is installed and its files are intact: "
                                      "look at what its driver needs (the loader's words above)")


def _module(diagnosis: Diagnosis, target, missing: Missing) -> Diagnosis:
    provided = _distributions(target, missing.name)
    if provided:
        dist = provided[0]["dist"]
        lacking = provided[0]["missing"]
        what = f"its files {', '.join(lacking[:3])} are missing" if lacking else "it does not import"
        return replace(diagnosis, message=f"{missing.said}: the distribution {dist} is installed but {what}: "
                                          f"reinstall it (pip install --force-reinstall {dist})")
    top = missing.name.split(".")[0]
    return replace(diagnosis, message=f"{missing.said}: pip install {DISTRIBUTION_OF.get(top, top)}")
