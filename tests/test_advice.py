"""Advice held to the image (rendergate.core.advice), in real containers of the dev images: where a
check's line would advise installing a package, that package is installed here and one of its
files is planted missing or changed; the check (or the real tool) runs, its diagnosis goes
through advice.checked() as a failed check's line does (rendergate.plugin.gating), and the image
itself (dpkg, its Python's metadata) is asked: the line never advises installing what the image
has, and it names the package to reinstall."""
from __future__ import annotations

import io
import json
import shlex
import uuid
from contextlib import contextmanager

import pytest

from conftest import ROOT, built_images
from rendergate.checks.xorg import start_x
from rendergate.core.advice import checked
from rendergate.core.diagnosis import CheckFailed, Diagnosis
from rendergate.core.grammars import diagnose
from rendergate.core.manifest import load_variant
from rendergate.engines.docker import DockerTarget
from rendergate.engines.docker_engine import EngineError, owner_label
from rendergate.mutation.judging import advised_installs
from suites.test_egl_vulkan import egl_devices, vulkan_devices

LIB = "/usr/lib/x86_64-linux-gnu"
LVP_JSON = "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json"
EGL_JSON = "/usr/share/glvnd/egl_vendor.d/50_mesa.json"
SITE = "/opt/venv/lib/python3.11/site-packages"
TEX = "/usr/share/texlive/texmf-dist/tex/"
GLXINFO = "/usr/bin/glxinfo.x86_64-linux-gnu"  # /usr/bin/glxinfo links to it


@pytest.fixture(scope="module")
def dev_target(engine, base_image, tmp_path_factory):
    """One container per dev image, shared by the module's tests (each puts back what it planted)."""
    images = built_images(engine, tmp_path_factory, {"manim", "xorg-glx"})
    opened: dict[str, DockerTarget] = {}

    def open_target(name: str) -> DockerTarget:
        if name not in opened:
            opened[name] = DockerTarget.start(engine, load_variant(ROOT / "images" / name), images[name],
                                              f"advice-{uuid.uuid4().hex[:8]}", owner_label(),
                                              tmp_path_factory.mktemp("advice"), default_timeout=120)
        return opened[name]

    yield open_target
    for opened_target in opened.values():
        engine.remove(opened_target.container.id)


def as_root(target: DockerTarget, command: str) -> None:
    code, out = target.container.exec_run(["/bin/sh", "-c", command], user="0")
    assert code == 0, out.decode(errors="replace")


@contextmanager
def planted(target: DockerTarget, paths: list[str], fault: str):
    """`fault` run as root; the files and folders `paths` it changes are put back afterwards."""
    kept = " ".join(shlex.quote(p) for p in paths)
    as_root(target, f"tar --ignore-failed-read -cf /var/tmp/kept.tar {kept} 2>/dev/null && {fault}")  # a new path: removed after
    try:
        yield
    finally:
        as_root(target, f"rm -rf {kept} && tar -xpf /var/tmp/kept.tar -C / && rm /var/tmp/kept.tar")
        target.memo.pop("xserver", None)  # an X server that did not come up is tried anew


def failed_check(check, target: DockerTarget) -> Diagnosis:
    """The diagnosis a check raises, held to the image as its one-line report is."""
    with pytest.raises(CheckFailed) as failure:
        check(target)
    return checked(failure.value.diagnosis, target)


def tool_said(command: str, what: str):
    """A check that runs the real tool in the target and diagnoses what it says."""
    def run(target: DockerTarget):
        result = target.run(command)
        assert result.rc != 0, result.output
        raise CheckFailed.of(diagnose(result.output, result.rc, what, target.facts()))
    return run


def has(target: DockerTarget, name: str) -> bool:
    """Whether the image has the Debian package or Python distribution `name` (asked of it)."""
    return target.run(f"dpkg-query -W -f='${{db:Status-Status}}' {shlex.quote(name)} 2>/dev/null | grep -qx installed || "
                      f"{target.python} -c 'import importlib.metadata as m; m.version(\"{name}\")' 2>/dev/null").rc == 0


LATEX = ("cd /var/tmp && printf '%s\\n' '\\documentclass{article}' '\\usepackage{PKG}' '\\begin{document}x\\end{document}' "
         "> advice.tex && latex -interaction=nonstopmode -halt-on-error advice.tex")

# (variant, what is put back, the fault, the check, the package to reinstall, the cause, words)
CASES = {
    # _no_graphics_driver: "install mesa-vulkan-drivers" / "install libegl-mesa0" for a software device
    "vulkan-icd-json-removed": ("xorg-glx", ["/usr/share/vulkan/icd.d"], "rm /usr/share/vulkan/icd.d/*.json",
                                vulkan_devices, "mesa-vulkan-drivers", "system-library-missing",
                                ["/usr/share/vulkan/icd.d/", "is missing (and 3 more)"]),
    "egl-vendor-json-removed": ("xorg-glx", [EGL_JSON], f"rm {EGL_JSON}", egl_devices, "libegl-mesa0",
                                "system-library-missing", [EGL_JSON, "is missing"]),
    # glvnd keeps silent about the library its JSON names: the JSON, not its package's own (a
    # configuration changed: misconfigured), tells
    "egl-vendor-json-names-missing-library": ("xorg-glx", [EGL_JSON], f"sed -i s/libEGL_mesa/libEGL_nosuch/ {EGL_JSON}",
                                              egl_devices, "libegl-mesa0", "config-invalid", [EGL_JSON, "not the package's own"]),
    # vulkan_driver_failed / cannot_load: the driver's own library, "install mesa-vulkan-drivers"
    "vulkan-driver-library-removed": ("xorg-glx", [f"{LIB}/libvulkan_lvp.so"], f"rm {LIB}/libvulkan_lvp.so", vulkan_devices,
                                      "mesa-vulkan-drivers", "system-library-missing", [f"{LIB}/libvulkan_lvp.so is missing"]),
    "vulkan-icd-json-names-missing-library": ("xorg-glx", [LVP_JSON], f"sed -i s/libvulkan_lvp/libvulkan_nosuch/ {LVP_JSON}",
                                              vulkan_devices, "mesa-vulkan-drivers", "config-invalid",
                                              [f"the ICD JSON {LVP_JSON} names the Vulkan driver {LIB}/libvulkan_nosuch.so",
                                               f"its file {LVP_JSON} is not the package's own"]),
    # cannot_load: Mesa's driver ("install libgl1-mesa-dri"), a library it needs ("the package that ships it")
    "mesa-driver-removed": ("xorg-glx", [f"{LIB}/dri/swrast_dri.so"], f"rm {LIB}/dri/swrast_dri.so", egl_devices,
                            "libgl1-mesa-dri", "system-library-missing", ["swrast_dri.so is missing"]),
    "mesa-driver-dependency-removed": ("xorg-glx", [f"{LIB}/libdrm_radeon.so.1.0.1"], f"rm {LIB}/libdrm_radeon.so.1.0.1",
                                       egl_devices, "libdrm-radeon1", "system-library-missing",
                                       ["cannot load: libdrm_radeon.so.1", "libdrm_radeon.so.1.0.1 is missing"]),
    # tool_missing "install it", and advice's PACKAGE_OF_TOOL "install P (it ships X)"
    "tool-removed": ("xorg-glx", ["/usr/bin/vulkaninfo"], "rm /usr/bin/vulkaninfo", vulkan_devices, "vulkan-tools",
                     "tool-missing", ["/usr/bin/vulkaninfo is missing"]),
    "tool-removed-from-its-file-list": ("xorg-glx", ["/usr/bin/vulkaninfo", "/var/lib/dpkg/info/vulkan-tools.list"],
                                        "rm /usr/bin/vulkaninfo && sed -i '\\|^/usr/bin/vulkaninfo$|d' "
                                        "/var/lib/dpkg/info/vulkan-tools.list", vulkan_devices, "vulkan-tools", "tool-missing",
                                        ["vulkan-tools is installed but its file list names no vulkaninfo"]),
    # Xorg: "install its package (driver dummy: xserver-xorg-video-dummy)", "install xkb-data (xkeyboard-config)"
    "xorg-driver-removed": ("xorg-glx", ["/usr/lib/xorg/modules/drivers/dummy_drv.so"],
                            "rm /usr/lib/xorg/modules/drivers/dummy_drv.so", lambda t: start_x(t, False),
                            "xserver-xorg-video-dummy", "system-library-missing", ["dummy_drv.so is missing"]),
    "xkb-rules-removed": ("xorg-glx", ["/usr/share/X11/xkb/rules/evdev"], "rm /usr/share/X11/xkb/rules/evdev",
                          lambda t: start_x(t, False), "xkb-data", "data-files-missing", ["/usr/share/X11/xkb/rules/evdev is missing"]),
    # "install the TeX Live package that ships it": the one of that file
    "latex-package-removed": ("manim", [TEX + "latex/amsmath", TEX + "latex-dev/amsmath"],
                              f"rm -r {TEX}latex/amsmath {TEX}latex-dev/amsmath",
                              tool_said(LATEX.replace("PKG", "amsmath"), "latex"), "texlive-latex-base",
                              "latex-package-missing", ["amsmath/amsmath.sty is missing"]),
    # the dynamic loader's "install the package that ships it", of a program's library
    "program-library-removed": ("manim", [f"{LIB}/libx264.so.164"], f"rm {LIB}/libx264.so.164",
                                tool_said("ffmpeg -hide_banner -version", "ffmpeg -version"), "libx264-164",
                                "system-library-missing", ["libx264.so.164 missing in the image (needed by ffmpeg)"]),
    # "pip install it": the module's distribution is installed
    "python-module-removed": ("manim", [f"{SITE}/manimpango"], f"rm -r {SITE}/manimpango",
                              tool_said("/opt/venv/bin/python -c 'import manimpango'", "import manimpango"), "ManimPango",
                              "python-module-missing", ["the distribution ManimPango is installed", "manimpango/__init__.py"]),
    # "pip install it", of a module of the standard library (a Debian package's extension module)
    "stdlib-extension-module-removed": ("xorg-glx", ["/usr/lib/python3.11/lib-dynload"], "rm -r /usr/lib/python3.11/lib-dynload",
                                        tool_said("python3 -c 'import _contextvars'", "python3"), "libpython3.11-stdlib",
                                        "python-module-missing", ["/usr/lib/python3.11/lib-dynload/_contextvars."]),
    # "install the package that ships it", of a library a wheel bundles
    "wheel-library-removed": ("manim", [f"{SITE}/av.libs"], f"rm {SITE}/av.libs/libavformat-*",
                              tool_said("/opt/venv/bin/python -c 'import av'", "import av"), "av",
                              "system-library-missing", ["the wheel av bundles it", "is missing"]),
    # diagnose()'s unknown cause: the program that failed without a word, and what it loads, held to
    # their packages: here a stand-in for the program
    "program-replaced-by-a-stand-in": ("xorg-glx", [GLXINFO], f"printf '#!/bin/sh\\nexit 1\\n' > {GLXINFO}",
                                       tool_said("glxinfo -B", "glxinfo -B"), "mesa-utils-bin", "file-damaged",
                                       ["glxinfo -B failed (exit 1", f"its file {GLXINFO} is not the package's own"]),
    # a shell's "Permission denied": the file the name leads to on PATH, and its package
    "program-not-executable": ("xorg-glx", ["/usr/bin/xdpyinfo"], "chmod a-x /usr/bin/xdpyinfo",
                               tool_said("xdpyinfo -version", "xdpyinfo -version"), "x11-utils", "file-damaged",
                               ["/usr/bin/xdpyinfo of x11-utils: restore its mode (chmod 0755 /usr/bin/xdpyinfo)"]),
    # a tool looked for by name (command -v) that is there but cannot run: not missing
    "tool-not-executable": ("xorg-glx", ["/usr/bin/eglinfo.x86_64-linux-gnu"], "chmod a-x /usr/bin/eglinfo.x86_64-linux-gnu",
                            egl_devices, "mesa-utils-bin", "file-damaged",
                            ["eglinfo not found in the target", "/usr/bin/eglinfo.x86_64-linux-gnu of mesa-utils-bin is there "
                                                                "but not executable"]),
    # the loader's "undefined symbol" names the user (a program by its bare name, a library by its
    # path), never the library that lacks it; its soname's file is found through ldd's real paths
    "library-replaced-under-a-bare-program": ("xorg-glx", [f"{LIB}/libGL.so.1.7.0"],
                                              f"cat {LIB}/libGLdispatch.so.0.0.0 > {LIB}/libGL.so.1.7.0",
                                              tool_said("LD_BIND_NOW=1 glxinfo -B", "glxinfo -B"), "libgl1",
                                              "library-wrong-version",
                                              ["glxinfo needs the symbol", f"its file {LIB}/libGL.so.1.7.0 is not the package's own"]),
    # a library replaced by one that needs libraries of its own folder (a wheel's): the loader
    # names one of those as missing, needed by the program; the program's own libraries say which
    # is not its package's own
    "library-replaced-by-one-that-needs-others": ("manim", [f"{LIB}/libpostproc.so.56.6.100"],
                                                  f"cat {SITE}/av.libs/libavformat-*.so* > {LIB}/libpostproc.so.56.6.100",
                                                  tool_said("ffmpeg -hide_banner -version", "ffmpeg -version"), "libpostproc56",
                                                  "file-damaged", ["missing in the image (needed by ffmpeg)",
                                                                   f"its file {LIB}/libpostproc.so.56.6.100 is not the package's own"]),
    "library-replaced-under-a-library": ("manim", [f"{LIB}/libflite_cmu_us_rms.so.2.2"],
                                         f"cat {LIB}/libflite_cmu_us_awb.so.2.2 > {LIB}/libflite_cmu_us_rms.so.2.2",
                                         tool_said("ffmpeg -hide_banner -version", "ffmpeg -version"), "libflite1",
                                         "library-wrong-version",
                                         ["libavfilter.so.8 needs the symbol",
                                          f"its file {LIB}/libflite_cmu_us_rms.so.2.2 is not the package's own"]),
}


@pytest.mark.parametrize("name", CASES)
def test_no_line_advises_installing_what_the_image_has(name, dev_target):
    variant, kept, fault, check, package, cause, words = CASES[name]
    image = dev_target(variant)
    assert has(image, package)
    with planted(image, kept, fault):
        d = failed_check(check, image)
    assert [what for what in advised_installs(d.message) if has(image, what)] == [], d.line()
    assert f"reinstall {package}" in d.message and d.cause.value == cause, d.line()
    for word in words:
        assert word in d.message, d.line()


def test_a_latex_package_no_package_of_the_image_ships_is_named_by_that_file(dev_target):
    """Where no installed package ships the file, the image cannot say which would: the line says
    how to find it, and names no package that ships another file (texlive-latex-extra, installed)."""
    image = dev_target("manim")
    d = failed_check(tool_said(LATEX.replace("PKG", "nosuchpkg"), "latex"), image)
    assert d.message == ("LaTeX package nosuchpkg.sty missing: install the TeX Live package that ships it "
                         "(apt-file search nosuchpkg.sty names it)"), d.line()
    assert [what for what in advised_installs(d.message) if has(image, what)] == []


@pytest.mark.parametrize("fault, cause, words", [
    ('["/usr/bin/truncate", "-s", "0", "/usr/bin/dash"]', "file-damaged", ["has no usable /bin/sh", "dash is installed but its file /bin/dash is not the "
                                                                     "package's own", "reinstall dash"]),
    ('["/usr/bin/chmod", "a-x", "/usr/bin/id"]', "file-damaged", ["cannot run `id` in its shell", "/usr/bin/id of coreutils: "
                                                                  "restore its mode", "reinstall coreutils"]),
    # the shell runs, `id` does not (a library it loads replaced): asked through that shell, as root
    ('["/usr/bin/dd", "if=/usr/lib/x86_64-linux-gnu/libXau.so.6.0.0", "of=/usr/lib/x86_64-linux-gnu/libselinux.so.1"]',
     "library-wrong-version", ["cannot run `id` in its shell: id needs the symbol", "libselinux1 is installed but its file",
                               "reinstall libselinux1"]),
])
def test_an_image_whose_shell_does_not_run_is_read_from_outside(fault, cause, words, engine, base_image, tmp_path_factory):
    """Real: an image whose /bin/sh is broken has no shell to ask: the engine's archive of its
    files and dpkg's lists and checksums say which file of which package, and the line says to
    reinstall that, not to add a shell; where the shell runs and the target's first command (id)
    does not, that shell is asked, as root."""
    good = built_images(engine, tmp_path_factory, {"xorg-glx"})["xorg-glx"]
    dockerfile = f"FROM {good}\nUSER root\nRUN {fault}\n"  # exec form: the shell itself may be what is broken
    built, _ = engine.client.images.build(fileobj=io.BytesIO(dockerfile.encode()), rm=True, forcerm=True)
    try:
        with pytest.raises(EngineError) as failure:
            DockerTarget.start(engine, load_variant(ROOT / "images" / "xorg-glx"), built.id, f"advice-{uuid.uuid4().hex[:8]}",
                               owner_label(), tmp_path_factory.mktemp("shell"), default_timeout=120)
        assert failure.value.cause.value == cause and failure.value.image["digest"] == built.id, str(failure.value)
        for word in words:
            assert word in str(failure.value)
        assert "add a shell" not in str(failure.value)
    finally:
        engine.client.images.remove(built.id, force=True)


STANDALONE = "/usr/share/texlive/texmf-dist/tex/latex/standalone/standalone.cls"
LOCAL_TEX = "/usr/local/share/texmf/tex/latex/standalone"

# (variant, what is put back, the fault, the check, the cause, words): where the package's own
# file is intact and the fault is elsewhere, the line names that, and advises no reinstall
ELSEWHERE = {
    # a cut-short copy in texmf-local, which TeX reads in place of the package's
    "tex-file-shadowed": ("manim", [LOCAL_TEX, "/usr/local/share/texmf/ls-R"],
                          f"mkdir -p {LOCAL_TEX} && head -c 6000 {STANDALONE} > {LOCAL_TEX}/standalone.cls && "
                          "mktexlsr /usr/local/share/texmf >/dev/null 2>&1",
                          tool_said("cd /var/tmp && printf '%s\\n' '\\documentclass{standalone}' '\\begin{document}x\\end{document}' "
                                    "> s.tex && latex -interaction=nonstopmode -halt-on-error s.tex", "latex"),
                          "file-damaged", [f"TeX reads {LOCAL_TEX}/standalone.cls, which no package ships, in place of "
                                           f"{STANDALONE} of texlive-latex-extra: remove it"]),
    # a module of the same name put first on sys.path by a .pth
    "python-module-shadowed": ("manim", ["/opt/legacy", f"{SITE}/00-legacy.pth"],
                               "mkdir -p /opt/legacy/cairo && printf 'version = \"1.11.0\"\\n' > /opt/legacy/cairo/__init__.py && "
                               f"printf 'import sys; sys.path.insert(0, \"/opt/legacy\")\\n' > {SITE}/00-legacy.pth",
                               tool_said("/opt/venv/bin/python -c 'import cairo; cairo.LineJoin'", "python"),
                               "library-wrong-version", ["cairo is imported from /opt/legacy/cairo/__init__.py, which no "
                                                         "installed distribution ships"]),
    # a module of Python's standard library that Debian ships apart, not installed: its package, not pip
    "stdlib-module-not-installed": ("xorg-glx", ["/var/tmp/nothing-planted"], "true",
                                    tool_said("python3 -c 'import tkinter'", "python3"), "python-module-missing",
                                    ["tkinter is of Python's standard library: install python3-tk"]),
}


@pytest.mark.parametrize("name", ELSEWHERE)
def test_a_fault_outside_the_packages_is_named_where_it_is(name, dev_target):
    variant, kept, fault, check, cause, words = ELSEWHERE[name]
    image = dev_target(variant)
    with planted(image, kept, fault):
        d = failed_check(check, image)
    assert [what for what in advised_installs(d.message) if has(image, what)] == [], d.line()
    assert "reinstall" not in d.message and d.cause.value == cause, d.line()
    for word in words:
        assert word in d.message, d.line()


def test_the_probes_answer_from_a_python_without_json(dev_target):
    """Real: Debian's python3-minimal has no json module; the files and inventory probes (those
    `files_intact` and `rendergate init` run) give the same JSON without it (the image's own
    Python, json made unimportable; found when `rendergate init` proposed nothing on such an image)."""
    image = dev_target("xorg-glx")
    image.run_probe("files_intact")  # the probes copied in
    for name in ("files_intact", "inventory"):
        probe = f"{image.workdir}/probes/{name}.py"
        plain = image.run(f"python3 {probe}", timeout=300)
        bare = image.run(f"python3 -c \"import runpy, sys; sys.modules['json'] = None; sys.path.insert(0, '{image.workdir}/probes'); "
                         f"sys.argv = ['{probe}']; runpy.run_path('{probe}', run_name='__main__')\"", timeout=300)
        assert plain.rc == 0 and bare.rc == 0 and json.loads(bare.stdout) == json.loads(plain.stdout), bare.output
