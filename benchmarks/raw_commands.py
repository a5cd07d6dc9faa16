"""What each check of the check tier runs, as a person would type it by hand in the same image, and
how long that takes: the floor a check's wall time is held to (issue 26: no check may take more
than ~1.3x its raw commands). One `docker exec` per raw command, all its commands in one shell,
as the image's user in a workdir of its own, its output captured as the suite captures a check's.

    .venv/bin/python benchmarks/raw_commands.py --repeats 3

RAW is keyed "check[variant]" (test_mathtex_renders[manim]): the checks that run in every image
(files_intact, the driver-capability checks) run other commands in each. A check with several
items (test_encoder_listed, one per encoder) runs the same commands in each.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rendergate.checks.graphics import LOADER_DEBUG  # noqa: E402
from rendergate.checks.timing import Series  # noqa: E402
from rendergate.checks.xorg import FIRST_DISPLAY, xorg_conf  # noqa: E402
from rendergate.core.driver_capabilities import DRIVER_FILES  # noqa: E402
from rendergate.core.manifest import Variant, load_variant  # noqa: E402

WORKDIR = "/var/tmp/rawbench"  # beside the checks' /var/tmp/rendergate, not /tmp (gVisor's own tmpfs)
LABEL = "rendergate.rawbench"  # not rendergate.run: a suite's sweep must not take these for its own
DISPLAY = f":{FIRST_DISPLAY}"  # the display the suite's first worker uses
GLX_DISPLAY = f":{FIRST_DISPLAY + 2}"  # GLX's own server, started by its raw commands as the check starts it
VNC_PORT = 5900 + FIRST_DISPLAY  # where the check's x11vnc serves that display (5900 + display)


@dataclass(frozen=True)
class Raw:
    """A check's commands by hand: `command`, timed, runs in one shell; `setup`, run once per
    container before anything is timed, is what the check finds already done by an earlier check
    (the X server) or what a person would prepare once (a .tex file)."""
    variant: str
    what: str
    command: str
    setup: str = ""


def _variant(name: str) -> Variant:
    return load_variant(ROOT / "images" / name)


# The wheels' half of files_intact (rendergate/probes/files_intact.py): RECORD's sha256 is urlsafe
# base64, which no coreutils tool compares, so it is Python, as a person would write it.
_RECORD_CHECK = """\
import base64, csv, glob, hashlib, os, sys
for base in dict.fromkeys(p for p in sys.path if p and os.path.isdir(p)):
    for record in glob.glob(os.path.join(base, "*.dist-info", "RECORD")):
        for path, digest, *_ in csv.reader(open(record)):
            if digest.startswith("sha256=") and "__pycache__/" not in path:
                try:
                    data = open(os.path.join(base, path), "rb").read()
                except OSError:
                    print("missing", path)
                    continue
                if base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode() != digest[7:]:
                    print("changed", path)
"""

# Cycles' device list for each backend this bpy has (the `list` of rendergate/probes/cycles_devices.py).
_CYCLES_LIST = """\
import bpy
prefs = bpy.context.preferences.addons["cycles"].preferences
for backend in ("CUDA", "OPTIX", "HIP", "ONEAPI"):
    try:
        prefs.compute_device_type = backend
    except TypeError:
        continue
    prefs.refresh_devices()
    print(backend, [d.name for d in prefs.devices])
"""

# Manim's MathTex of the probe's formula (rendergate/probes/mathtex.py), its .tex file kept: the
# input latex is given, written once through Manim's default template.
_MATHTEX_SOURCE = """\
from manim import MathTex, config
config.media_dir, config.no_latex_cleanup = "setup-tex", True
MathTex(r"\\int_0^1 x^2\\,dx = \\frac{1}{3}")
"""


def _x_server(display: str) -> str:
    """Xorg on the dummy driver, started as rendergate.checks.xorg._start does: its config
    written, then polled with xdpyinfo until a client connects (`$pid` is the server)."""
    folder = f"x{display.lstrip(':')}"
    return (f"mkdir -p {folder} && printf '%s' {shlex.quote(xorg_conf('dummy'))} > {folder}/xorg.conf || exit 1; "
            f"setsid Xorg {display} -config {folder}/xorg.conf -logfile {folder}/Xorg.log -noreset -nolisten tcp "
            f"</dev/null >{folder}/Xorg.out 2>&1 & pid=$!; up=; "
            f"for i in $(seq 100); do DISPLAY={display} xdpyinfo >/dev/null 2>&1 && up=1 && break; "
            f"kill -0 $pid 2>/dev/null || break; sleep 0.1; done; [ -n \"$up\" ]")


def _in_every_image(variant: str) -> dict[str, Raw]:
    """The checks every image of the check tier declares (gpu, files_intact)."""
    python = _variant(variant).settings.python
    programs = " ".join(name for name in DRIVER_FILES if "." not in name)
    return {
        f"test_capabilities_cover_requirements[{variant}]": Raw(
            variant, "the container's NVIDIA_DRIVER_CAPABILITIES", 'printf %s "$NVIDIA_DRIVER_CAPABILITIES"'),
        f"test_no_driver_files_baked_into_the_image[{variant}]": Raw(
            variant, "the bind mounts, the library cache and the driver's programs on PATH",
            f"cat /proc/self/mountinfo; ldconfig -p 2>/dev/null || /sbin/ldconfig -p; command -v {programs} || true"),
        f"test_installed_files_are_their_packages_own[{variant}]": Raw(
            variant, "dpkg's md5sums (files dpkg was told to leave out aside) and the wheels' RECORD",
            f"(cd / && cat /var/lib/dpkg/info/*.md5sums | md5sum -c --quiet --ignore-missing) && "
            f"{python} -c {shlex.quote(_RECORD_CHECK)}"),
    }


def _table() -> dict[str, Raw]:
    manim, blender = _variant("manim").settings.python, _variant("blender").settings.python
    x_display = f":{FIRST_DISPLAY + 1}"  # test_xorg_starts' own server, beside the shared one
    return {
        **_in_every_image("blender"),
        "test_bpy_loads_cycles[blender]": Raw(
            "blender", "bpy's Cycles device list of each backend", f"{blender} -c {shlex.quote(_CYCLES_LIST)}"),
        **_in_every_image("manim"),
        "test_mathtex_renders[manim]": Raw(
            "manim", "import manim, then latex and dvisvgm on Manim's default template",
            f"{manim} -c 'import manim' && latex -interaction=batchmode -output-format=dvi -halt-on-error "
            f"-output-directory=tex formula.tex && dvisvgm --page=1 --no-fonts --verbosity=0 --output=tex/formula.svg "
            "tex/formula.dvi",
            # -B: the setup writes no bytecode, so the timed `import manim` meets the image as the
            # check does (the image ships none: the first import in a container compiles Manim).
            setup=f"mkdir -p tex && {manim} -B -c {shlex.quote(_MATHTEX_SOURCE)} && cp setup-tex/Tex/*.tex formula.tex"),
        "test_manimpango_renders_text[manim]": Raw(
            "manim", "a Manim Text laid out by ManimPango (its SVG cache emptied, as the probe's fresh media dir is)",
            f"rm -rf media && {manim} -c 'import manimpango; from manim import Text; Text(\"rendergate \\u03a9\\u03bc\")'"),
        "test_encoder_listed[manim]": Raw("manim", "ffmpeg's encoder list", "ffmpeg -hide_banner -encoders"),
        **_in_every_image("xorg-glx"),
        "test_egl_initialises_headless[xorg-glx]": Raw(
            "xorg-glx", "eglinfo, headless (it exits non-zero when any one platform fails; the check reads its output)",
            f"command -v eglinfo >/dev/null && {LOADER_DEBUG['EGL']} eglinfo; true"),
        "test_vulkan_lists_a_device[xorg-glx]": Raw(
            "xorg-glx", "vulkaninfo --summary",
            f"command -v vulkaninfo >/dev/null && {LOADER_DEBUG['Vulkan']} vulkaninfo --summary"),
        "test_xorg_starts[xorg-glx]": Raw(
            "xorg-glx", "Xorg on the dummy driver until xdpyinfo connects, then stopped so that the next run may start it",
            f"command -v Xorg >/dev/null && command -v xdpyinfo >/dev/null || exit 1; {_x_server(x_display)} && kill $pid && wait $pid"),
        "test_glx_answers[xorg-glx]": Raw(  # the run's first check of the X server (the longest): it starts it
            "xorg-glx", "Xorg started, glxinfo -B, then glxgears until its window shows and a screenshot of the display",
            f"{_x_server(GLX_DISPLAY)} && DISPLAY={GLX_DISPLAY} {LOADER_DEBUG['GLX']} glxinfo -B && "
            f"(DISPLAY={GLX_DISPLAY} glxgears -geometry 640x480+0+0 >/dev/null 2>&1 & gears=$!; "
            f"for i in $(seq 20); do DISPLAY={GLX_DISPLAY} xwininfo -name glxgears 2>/dev/null | grep -q IsViewable && break; "
            f"sleep 0.1; done; sleep 0.3; "
            f"xwd -root -silent -display {GLX_DISPLAY} | xwdtopnm 2>/dev/null | pnmtopng > xorg-screenshot.png; "
            "status=$?; kill $gears; exit $status)"),
        "test_vnc_serves_display[xorg-glx]": Raw(
            "xorg-glx", "x11vnc on the display and its RFB banner read (on the next free port: the last run's x11vnc "
                        "may not have left the port it exits from when its client leaves)",
            f"command -v x11vnc >/dev/null && port=$(x11vnc -display {DISPLAY} -autoport {VNC_PORT} -localhost -nopw "
            "-bg -quiet -o x11vnc.log | sed -n 's/^PORT=//p') && bash -c \"exec 3<>/dev/tcp/127.0.0.1/$port && head -c 12 <&3\"",
            setup=_x_server(DISPLAY)),
    }


RAW: dict[str, Raw] = _table()


def _docker(*args: str) -> str:
    """The docker CLI's output; raises when it fails: a raw command that fails measures nothing
    worth comparing."""
    done = subprocess.run(["docker", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)[:160]} exited {done.returncode}: {done.stderr.strip()[-300:]}")
    return done.stdout


def _exec(container: str, command: str) -> float:
    """Run `command` in the container's workdir, as the image's user; its wall time."""
    started = time.monotonic()
    _docker("exec", "-w", WORKDIR, container, "/bin/sh", "-c", command)
    return time.monotonic() - started


@contextlib.contextmanager
def _container(variant: Variant, image: str) -> Iterator[str]:
    """A container of `image` started as the suite's engine starts one (rendergate.engines.docker_engine:
    entrypoint replaced, --init, the manifest's env and shm size), its workdir made by root and
    owned by the image's user; removed on the way out, whatever ends the block (Ctrl-C too)."""
    settings = variant.settings
    options = [arg for name, value in settings.env.items() for arg in ("-e", f"{name}={value}")]
    options += ["--shm-size", settings.shm_size] if settings.shm_size else []
    container = _docker("run", "-d", "--rm", "--init", "--label", f"{LABEL}={os.getpid()}", *options,
                        "--entrypoint", settings.command[0], image, *settings.command[1:]).strip()
    try:
        ids = _docker("exec", container, "/bin/sh", "-c", "echo $(id -u):$(id -g)").strip()
        _docker("exec", "-u", "0", container, "/bin/sh", "-c", f"mkdir -p {WORKDIR} && chown {ids} {WORKDIR}")
        yield container
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True)


def measure(image_of: dict[str, str], repeats: int) -> dict[str, Series]:
    """Each RAW entry whose variant has an image in `image_of` (variant -> image ref), timed once in
    each of `repeats` containers of its own, just started (its setup run first, untimed): as the
    first check to use a run's container meets it. The first `import manim` in a container compiles
    Manim (the image ships no bytecode) and writes the bytecode where its user may: the MathTex and
    ManimPango checks share that warm-up in a run, and whichever runs first pays it, here each does."""
    samples: dict[str, list[float]] = {}
    for variant, image in image_of.items():
        entries = {key: raw for key, raw in RAW.items() if raw.variant == variant}
        for _ in range(repeats):
            for key, raw in entries.items():
                with _container(_variant(variant), image) as container:
                    if raw.setup:
                        _exec(container, raw.setup)
                    samples.setdefault(key, []).append(_exec(container, raw.command))
    return {key: Series(tuple(walls)) for key, walls in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--image", action="append", default=[], metavar="VARIANT=REF",
                        help="the image of a variant (default: each variant's own build, rendergate/VARIANT:dev)")
    args = parser.parse_args()
    image_of = {raw.variant: _variant(raw.variant).image_ref for raw in RAW.values()}
    image_of.update(dict(pair.split("=", 1) for pair in args.image))
    found = measure(image_of, args.repeats)
    print(f"{'check':<58} {'variant':<9} {'raw median (s)':>14} {'spread':>7}")
    for key, times in found.items():
        print(f"{key.split('[')[0]:<58} {RAW[key].variant:<9} {times.median:>14.3f} {times.spread:>7.2f}")


if __name__ == "__main__":
    main()
