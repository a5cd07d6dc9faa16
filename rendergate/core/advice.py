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
import sys
from dataclasses import replace
from pathlib import PurePosixPath

from rendergate.core.diagnosis import Cause, Diagnosis, Missing
from rendergate.core.driver_capabilities import is_driver_file
from rendergate.core.known_causes import CONFIG_FILE
from rendergate.core.packages import (
    DOCUMENTATION,
    Packaged,
    distributions,
    escaped,
    installed,
    listed,
    loaded,
    packaged,
    packaged_file,
    pattern_of,
    resolved,
    wheel_of,
)

# Where an import name is not its distribution's name and the image cannot say (not installed):
# the usual ones of render images.
DISTRIBUTION_OF = {"cairo": "pycairo", "PIL": "Pillow", "cv2": "opencv-python", "yaml": "PyYAML", "OpenGL": "PyOpenGL",
                   "skimage": "scikit-image", "sklearn": "scikit-learn", "gi": "PyGObject", "pydub": "pydub"}
# Debian packages of the programs the suites run, for a program no installed package names.
PACKAGE_OF_TOOL = {"ffmpeg": "ffmpeg", "ffprobe": "ffmpeg", "latex": "texlive-latex-base", "dvisvgm": "dvisvgm",
                   "xelatex": "texlive-xetex", "glxinfo": "mesa-utils", "glxgears": "mesa-utils", "eglinfo": "mesa-utils",
                   "vulkaninfo": "vulkan-tools", "xdpyinfo": "x11-utils", "x11vnc": "x11vnc", "Xorg": "xserver-xorg-core",
                   "xwd": "x11-apps", "xwdtopnm": "netpbm", "pnmtopng": "netpbm"}
# Modules of Python's standard library that Debian ships in packages of their own.
STDLIB_APART = {"tkinter": "python3-tk", "distutils": "python3-distutils", "lib2to3": "python3-lib2to3",
                "venv": "python3-venv", "ensurepip": "python3-venv"}
TEX_FILE = re.compile(r"\.(sty|cls|fd|def|clo|tex|cfg|ldf)$")


def _reinstall(diagnosis: Diagnosis, missing: Missing, broken: list[Packaged]) -> Diagnosis:
    """The line for a package that is installed but one of whose files is gone or is not its own:
    reinstall it. A damaged file is `file-damaged`, unless the diagnosis already says what kind
    of wrong it is (a library of the wrong version)."""
    p = broken[0]
    what = "missing" if p.state == "gone" else "not the package's own (it differs from its checksum: damaged, replaced, " \
                                                "or of another version)"
    more = f" (and {len(broken) - 1} more)" if len(broken) > 1 else ""
    kept = diagnosis.cause in (Cause.LIBRARY_WRONG_VERSION, Cause.CONFIG_INVALID)
    changed = Cause.CONFIG_INVALID if CONFIG_FILE.search(p.path) else Cause.FILE_DAMAGED  # a configuration changed: misconfigured
    cause = changed if p.state == "damaged" and not kept else diagnosis.cause
    # dpkg restores a conffile only when told to (checked in rendergate/manim:dev on /etc/fonts/fonts.conf)
    options = " -o Dpkg::Options::=--force-confask,confnew,confmiss" if p.conffile else ""
    return replace(diagnosis, cause=cause, message=f"{missing.said}: {p.package} is installed but its file {p.path} is "
                                                  f"{what}{more}: reinstall {p.package} (apt-get install --reinstall{options} "
                                                  f"{p.package})")


def checked(diagnosis: Diagnosis, target) -> Diagnosis:
    """The diagnosis with its advice held to the image; unchanged when it blames nothing missing,
    or when the image cannot be asked."""
    missing = diagnosis.missing
    if missing is None:
        return diagnosis
    try:
        return ADVISERS.get(missing.kind, _file)(diagnosis, target, missing)
    except Exception:  # the image cannot be asked (no shell left, no Python): the line as classified
        return diagnosis


def _file(diagnosis: Diagnosis, target, missing: Missing) -> Diagnosis:
    found = packaged(target, pattern_of([missing.name]))
    unreadable = [p for p in found if p.state == "unreadable"]
    if unreadable:  # there and maybe intact: the image's user may not read it
        p = unreadable[0]
        mode = target.run(f"stat -c '%A %U' {shlex.quote(p.path)}", timeout=60).stdout.strip()
        return replace(diagnosis, cause=Cause.FILE_DAMAGED,
                       message=f"{missing.said}: {p.path} of {p.package} is there but not readable by the image's user "
                               f"({mode}): make it readable (chmod a+r {p.path})")
    broken = [p for p in found if p.state != "ok"]
    if broken:
        return _reinstall(diagnosis, missing, broken[:1])
    if missing.needed_by:  # no package lost it: what asks for it may not be its package's own (a library replaced
        # by one that needs others, which its new folder does not hold)
        replaced = [p for p in listed(target, loaded(target, resolved(target, missing.needed_by))) if p.state == "damaged"]
        if replaced:
            return _reinstall(replace(diagnosis, cause=Cause.FILE_DAMAGED), missing, replaced[:1])
    if missing.named_by:
        return _named_by(diagnosis, target, missing, found)
    if found and TEX_FILE.search(missing.name):  # TeX finds its files by kpathsea's search path, not PATH or ld.so's
        return _tex_search(diagnosis, target, missing, found[0])
    if found and missing.kind == "tool":  # there and its package's own, yet not found on PATH: it may not run
        real = resolved(target, found[0].path)
        if real and target.run(f"[ -x {shlex.quote(real)} ]", timeout=60).rc != 0:
            return _not_executable(replace(diagnosis, cause=Cause.FILE_DAMAGED), missing,
                                   packaged_file(target, real) or found[0], " is there but not executable:")
    if found and missing.kind == "library" and diagnosis.cause is Cause.FILE_DAMAGED:  # intact: what it loads is not
        return _needs(diagnosis, target, replace(missing, name=found[0].path))
    if found:  # every file of it there and intact: installing it again changes nothing
        p = found[0]
        return replace(diagnosis, message=f"{missing.said}: {p.path} of {p.package} is there and intact, "
                                          "yet not found where it is looked for: check the search path (PATH, the "
                                          "loader's path: ldconfig, LD_LIBRARY_PATH) and its architecture")
    wheel = wheel_of(target, missing.name) if missing.kind == "library" or "-packages/" in missing.name else None
    if wheel:
        name, changed = wheel["dist"], wheel["missing"] + wheel.get("damaged", [])
        if missing.kind == "file" and not changed:  # its wheel's own file, intact: not damaged, of another version
            cause = Cause.LIBRARY_WRONG_VERSION if diagnosis.cause is Cause.FILE_DAMAGED else diagnosis.cause
            return replace(diagnosis, cause=cause,
                           message=f"{missing.said}: it is {name}'s own file, intact (RECORD's checksum): {name} and what "
                                   "uses it are of versions that do not match: make them match (pip install -U both)")
        cause = (Cause.FILE_DAMAGED if wheel.get("damaged") and diagnosis.cause in (Cause.LIBRARY_WRONG_VERSION,
                 Cause.PYTHON_MODULE_MISSING) else diagnosis.cause)
        state = f": its file {changed[0]} is {'missing' if wheel['missing'] else 'not its own (RECORD checksum)'}" if changed else ""
        return replace(diagnosis, cause=cause, message=f"{missing.said}: the wheel {name} bundles it{state}: reinstall "
                                                       f"{name} (pip install --force-reinstall {name})")
    if missing.kind == "tool" and missing.name in PACKAGE_OF_TOOL:
        package = PACKAGE_OF_TOOL[missing.name]
        if installed(target, package):  # its file list does not name the tool: installing it again gives none
            return replace(diagnosis, message=f"{missing.said}: {package} is installed but its file list names no "
                                              f"{missing.name} (dpkg's database changed, or another version): reinstall "
                                              f"{package} (apt-get install --reinstall {package}) and look at its files "
                                              f"(dpkg -L {package})")
        return replace(diagnosis, message=f"{missing.said}: install {package} (it ships {missing.name})")
    return diagnosis


def _tex_search(diagnosis: Diagnosis, target, missing: Missing, p: Packaged) -> Diagnosis:
    """A TeX file its package holds intact, yet TeX fails on it: TeX reads another of its name (one
    in texmf-local shadowing it), or its search path (texmf.cnf, a conffile) was changed."""
    name = PurePosixPath(missing.name).name
    read = target.run(f"kpsewhich -progname=latex {shlex.quote(name)}", timeout=60).stdout.strip()
    if read.startswith("/") and read != p.path and not packaged(target, pattern_of([read])):
        return replace(diagnosis, message=f"{missing.said}: TeX reads {read}, which no package ships, in place of "
                                          f"{p.path} of {p.package}: remove it (then mktexlsr)")
    config = [c for c in packaged(target, pattern_of(["texmf.cnf"])) if c.state != "ok"]
    if config:
        return _reinstall(replace(diagnosis, cause=Cause.CONFIG_INVALID), missing, config[:1])
    if not read:  # its package's file is where it belongs: the search path does not reach it
        return replace(diagnosis, cause=Cause.CONFIG_INVALID,
                       message=f"{missing.said}: {p.path} of {p.package} is there and intact, yet TeX's search path does "
                               f"not reach it (kpsewhich -progname=latex {name} finds nothing): check TEXINPUTS (kpsewhich "
                               "-progname=latex -var-value TEXINPUTS) and /etc/texmf/web2c/texmf.cnf, then mktexlsr")
    return replace(diagnosis, message=f"{missing.said}: {p.path} of {p.package} is there and intact, and TeX finds it "
                                      "(kpsewhich): TeX's own words above say what else failed")


def _named_by(diagnosis: Diagnosis, target, missing: Missing, found: list[Packaged]) -> Diagnosis:
    """A library a manifest names (an ICD JSON) that is no package's file where it is looked for:
    the manifest names it wrong. Its package's own manifest, changed: reinstall that; else correct it."""
    manifest = [p for p in packaged(target, pattern_of([missing.named_by])) if p.path == missing.named_by]
    elsewhere = f" ({found[0].package} ships it as {found[0].path})" if found else ""
    named = replace(missing, said=missing.said + elsewhere)
    changed = replace(diagnosis, cause=Cause.CONFIG_INVALID)
    if manifest and manifest[0].state != "ok":
        return _reinstall(changed, named, manifest)
    owner = f" ({manifest[0].package}'s own file, unchanged)" if manifest else ""
    return replace(changed, message=f"{named.said}: correct the library_path of {missing.named_by}{owner}")


def _needs(diagnosis: Diagnosis, target, missing: Missing) -> Diagnosis:
    """A file that misses a symbol (a program by name: the one on PATH): which of the libraries it
    loads (ldd) is not its package's own file."""
    libraries = loaded(target, resolved(target, missing.name))
    owned = listed(target, libraries)
    replaced = [p for p in owned if p.state == "damaged"]
    if replaced:
        return _reinstall(diagnosis, missing, replaced[:1])
    known = {q.path for q in owned} | {"/usr" + q.path for q in owned}
    for path in (p for p in libraries if p not in known and not is_driver_file(p.rsplit("/", 1)[1])):  # the host's driver: no package's
        wheel = wheel_of(target, path)  # no package's: a wheel's bundled library, or no one's at all
        if wheel and wheel.get("damaged"):
            return replace(diagnosis, message=f"{missing.said}: {path} is not the wheel {wheel['dist']}'s own (RECORD "
                                              f"checksum): reinstall {wheel['dist']} (pip install --force-reinstall "
                                              f"{wheel['dist']})")
        if not wheel:
            return replace(diagnosis, message=f"{missing.said}: of what it loads, {path} is no package's or wheel's "
                                              "(put first by LD_LIBRARY_PATH, an rpath or ld.so.conf?): remove it, or what "
                                              "puts it first")
    return diagnosis


def _not_executable(diagnosis: Diagnosis, missing: Missing, p: Packaged, what: str = ":") -> Diagnosis:
    """The line for a program of `p`'s that cannot run: its mode, or its package, restored."""
    return replace(diagnosis, message=f"{missing.said}: {p.path} of {p.package}{what} restore its mode (chmod 0755 "
                                      f"{p.path}) or reinstall {p.package} (apt-get install --reinstall {p.package})")


def _program(diagnosis: Diagnosis, target, missing: Missing) -> Diagnosis:
    """A program that failed for no reason its output gives: it (the file its name resolves to)
    and the libraries it loads, held to their packages; one that is not its package's own (a
    stand-in, a copy of another file) is the likely cause. Else the line as it was (unknown cause)."""
    path = resolved(target, missing.name)
    if not path:
        return diagnosis
    damaged = [p for p in listed(target, [path, *loaded(target, path)]) if p.state == "damaged"]
    return _reinstall(replace(diagnosis, cause=Cause.FILE_DAMAGED), missing, damaged[:1]) if damaged else diagnosis


def _mode(diagnosis: Diagnosis, target, missing: Missing) -> Diagnosis:
    """A program that lost its execute bit: the file its name leads to, and the package that ships it."""
    path = resolved(target, missing.name)
    p = packaged_file(target, path) if path else None
    return _not_executable(diagnosis, missing, p) if p else diagnosis


def _imported(diagnosis: Diagnosis, target, missing: Missing) -> Diagnosis:
    """A Python module that lacks what its users take from it: imported from a file no installed
    distribution ships (a path entry or a .pth puts it first), or from its distribution's own
    file, changed; else of a version its users do not accept (pip check)."""
    name = missing.name
    where = target.run(f"{target.python} -c 'import {name}; print({name}.__file__)' 2>/dev/null", timeout=60).stdout.strip()
    if where.startswith("/"):
        wheel = wheel_of(target, where)
        if wheel is None and not packaged(target, pattern_of([where])):
            return replace(diagnosis, message=f"{missing.said}: {name} is imported from {where}, which no installed "
                                              "distribution ships (a path entry or a .pth puts it first): remove it, or "
                                              "what puts it first")
        if wheel and wheel.get("damaged"):
            return replace(diagnosis, cause=Cause.FILE_DAMAGED,
                           message=f"{missing.said}: {wheel['damaged'][0]} is not the wheel {wheel['dist']}'s own (RECORD "
                                   f"checksum): reinstall {wheel['dist']} (pip install --force-reinstall {wheel['dist']})")
    said = target.run(f"{target.python} -m pip check 2>/dev/null", timeout=120).stdout
    conflict = next((line.strip() for line in said.splitlines() if re.search(rf"\b{re.escape(name)}\b", line, re.I)), None)
    if conflict:
        return replace(diagnosis, message=f"{missing.said}: pip check: {conflict.rstrip('.')}: make the versions match")
    return diagnosis


def _package(diagnosis: Diagnosis, target, missing: Missing) -> Diagnosis:
    """Advice to install a package: held to whether it is installed, and if so, to its files."""
    files = [p for p in packaged(target, ".", f"{missing.name}*", most=10000) if p.package == missing.name]
    if not files:  # not installed: the advice stands
        return diagnosis
    broken = [p for p in files if p.state != "ok" and not DOCUMENTATION.match(p.path)]
    if broken:
        return _reinstall(diagnosis, missing, broken)
    return replace(diagnosis, message=f"{missing.said}: {missing.name} is installed and its files are intact: "
                                      "look at what its driver needs (the loader's words above)")


def _module(diagnosis: Diagnosis, target, missing: Missing) -> Diagnosis:
    """A Python module missing: a Debian package's (the standard library's extension modules,
    python3-*: its file in dpkg's lists, by the names Python looks for: M.py, M/__init__.py,
    M.cpython-311-....so), asked first, by the shell (the image's Python may be what is broken);
    else an installed distribution's; else the distribution to install."""
    top = missing.name.split(".")[0]
    shipped = packaged(target, rf"/{escaped(top)}(\.py|/__init__\.py|(\.[A-Za-z0-9_-]+)?\.so)$")  # ERE: no \w in [ ]
    broken = [p for p in shipped if p.state != "ok"]
    if broken:
        return _reinstall(diagnosis, missing, broken[:1])
    provided = distributions(target, missing.name)
    if provided:
        dist = provided[0]["dist"]
        lacking = provided[0]["missing"]
        what = f"its files {', '.join(lacking[:3])} are missing" if lacking else "it does not import"
        return replace(diagnosis, message=f"{missing.said}: the distribution {dist} is installed but {what}: "
                                          f"reinstall it (pip install --force-reinstall {dist})")
    if shipped:
        return replace(diagnosis, message=f"{missing.said}: {shipped[0].path} of {shipped[0].package} is there and intact, "
                                          "yet not found where Python looks (sys.path: PYTHONPATH, the interpreter run)")
    if top in sys.stdlib_module_names:  # no wheel brings it: the image's Python lacks part of its standard library
        where = (f"install {STDLIB_APART[top]}" if top in STDLIB_APART else
                 "install the rest of it (Debian: libpython3.X-stdlib, X that Python's; python3-minimal has only part)")
        return replace(diagnosis, message=f"{missing.said}: {top} is of Python's standard library: {where}")
    return replace(diagnosis, message=f"{missing.said}: pip install {DISTRIBUTION_OF.get(top, top)}")


# How each kind of thing a diagnosis blames (Missing.kind) is held to the image; any other kind
# (a library, a tool, a file) by its file.
ADVISERS = {"needs": _needs, "program": _program, "mode": _mode, "imported": _imported, "module": _module,
            "package": _package}
