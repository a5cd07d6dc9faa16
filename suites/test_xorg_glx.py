"""(f) Xorg + GLX inside the target, as OpenGL apps (Unity-style players) on headless servers need.

Xorg runs with NVIDIA's driver where hardware GL is required and a GPU is visible, else with the
dummy driver. The classic failure is silent: GLX falls back to llvmpipe and only the renderer
string tells, so a software renderer fails the hardware requirement.
"""
import pytest

from rendergate.checks.graphics import LOADER_DEBUG, VENDOR_LIBRARIES, library_problems, require_vendor
from rendergate.checks.xorg import start_x
from rendergate.core.diagnosis import Cause, CheckFailed, Missing
from rendergate.core.grammars import diagnose
from rendergate.core.parsers import glx_device, parse_glxinfo
from rendergate.core.requirements import declare
from rendergate.core.schema import boolean, word
from rendergate.plugin import requires

XORG = declare("xorg", boolean, "true or false", "Xorg starts in the target and serves GLX")
GLX_RENDERER = declare("glx_renderer", word, 'the GL vendor the renderer must come from, e.g. "nvidia"',
                       "GLX renders in hardware from that vendor (Xorg on its driver), not llvmpipe",
                       capabilities={"graphics", "display"}, example='"nvidia"')
VNC = declare("vnc", boolean, "true or false", "x11vnc serves the X display")


def x_server(target):
    return start_x(target, want_nvidia="glx_renderer" in target.variant.requirements)


def glxinfo(target):
    server = x_server(target)
    result = target.check(f"DISPLAY={server.display} {LOADER_DEBUG['GLX']} glxinfo -B", "glxinfo -B")
    info = parse_glxinfo(result.stdout)
    if not info.renderer:  # glxinfo exits 0 even when the server has no GLX
        # The client only says it found no visual; the server's errors, or the loader on the
        # vendor libraries glvnd loads in silence, say what is missing.
        server_errors = target.run(f"grep -F '(EE)' {server.log_path}").stdout
        evidence = f"{result.output}\n{server_errors}\n{library_problems(target, VENDOR_LIBRARIES['GLX'])}"
        raise CheckFailed.of(diagnose(evidence, result.rc, "glxinfo -B (no OpenGL renderer)", target.facts()))
    return info


@requires(XORG)
def test_xorg_starts(target):
    x_server(target)


@requires(XORG)
def test_glx_answers(target, artifacts):
    glxinfo(target)
    # Evidence for reviewers: a GL client drawing on the display, as the renderer saw it.
    display, png = x_server(target).display, f"{target.workdir}/xorg-screenshot.png"
    # Taken once its window shows (xwininfo, x11-utils as xdpyinfo) and it has drawn a few frames; at
    # most 2 s: glxgears on a software renderer takes the CPU the other checks are waiting for.
    target.check(f"DISPLAY={display} glxgears -geometry 640x480+0+0 >/dev/null 2>&1 & gears=$!; "
                 f"for i in $(seq 20); do DISPLAY={display} xwininfo -name glxgears 2>/dev/null | grep -q IsViewable "
                 f"&& break; sleep 0.1; done; sleep 0.3; "
                 f"xwd -root -silent -display {display} | xwdtopnm 2>/dev/null | pnmtopng > {png}; "
                 f"status=$?; kill $gears; exit $status", "screenshot (glxgears, xwd | xwdtopnm | pnmtopng)")
    artifacts("xorg-screenshot.png", target.fetch(png))


@requires(GLX_RENDERER)
@pytest.mark.needs_gpu
def test_glx_renderer(target, requirement):
    require_vendor(target, [glx_device(glxinfo(target))], "GLX", requirement)


@requires(VNC)
def test_vnc_serves_display(target):
    server = x_server(target)
    banner, _ = target.run_after(  # a client at once, in the same exec: x11vnc answers it soonest
        f"bash -c 'exec 3<>/dev/tcp/127.0.0.1/{server.vnc_port} && head -c 12 <&3'", tools=("x11vnc",),
        steps=(("starting x11vnc", f"x11vnc -display {server.display} -rfbport {server.vnc_port} -localhost -nopw -bg "
                                   f"-quiet -o {target.workdir}/x11vnc.log"),), timeout=30)
    if not banner.stdout.startswith("RFB "):  # x11vnc itself, as its package ships it? (the advice asks the image)
        said = target.run(f"tail -c 300 {target.workdir}/x11vnc.log").stdout.strip() or "nothing in its log"
        raise CheckFailed(Cause.COMMAND_FAILED, f"x11vnc accepts no VNC client on :{server.vnc_port} (got "
                                                f"{banner.output[:60]!r}; x11vnc said {said[-120:]!r})",
                          Missing("program", "x11vnc", f"x11vnc accepts no VNC client on :{server.vnc_port}"))
