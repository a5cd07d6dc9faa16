"""Every check can fail: each known-bad image (tests/known_bad/, one planted defect FROM a good
image) is validated against its good variant's manifest and must fail the right check with the
right diagnosis, and leave no container behind. Each runs as a platform team runs rendergate:
installed from its wheel, in a repo of theirs holding only the manifest, the image named by --image."""
import subprocess

import pytest

from conftest import ROOT, run_in_user_repo, user_repo
from rendergate.core.manifest import load_variant
from rendergate.mutation.judging import advised_installs

# name: (variant, check, requirement, cause, words the one-line diagnosis must contain)
CASES = {
    "latex-without-standalone": ("manim", "test_mathtex_renders", None, "latex-package-missing",
        "standalone.cls"),
    "ffmpeg-without-nvenc": ("manim", "test_encoder_listed", "h264_nvenc", "feature-not-compiled",
        "ffmpeg was built without the h264_nvenc encoder"),
    "manimpango-absent": ("manim", "test_manimpango_renders_text", None, "python-module-missing",
        "manimpango"),
    "pango-library-missing": ("manim", "test_manimpango_renders_text", None, "system-library-missing",
        "libpango-1.0.so.0"),
    "latex-without-dvisvgm": ("manim", "test_mathtex_renders", None, "tool-missing",
        "dvisvgm not found in the target: dvisvgm is installed but its file /usr/bin/dvisvgm is missing"),
    "bpy-without-cycles-addon": ("blender", "test_bpy_loads_cycles", None, "python-module-missing",
        "bpy's Cycles add-on missing in the image ("),
    "cairo-library-missing": ("manim", "test_manimpango_renders_text", None, "system-library-missing",
        "system library libcairo.so.2 missing in the image: libcairo2 is installed but its file "),
    "cairo-library-truncated": ("manim", "test_manimpango_renders_text", None, "file-damaged",
        "libcairo2 is installed but its file /usr/lib/x86_64-linux-gnu/libcairo.so.2"),
    "pangocairo-replaced": ("manim", "test_manimpango_renders_text", None, "library-wrong-version",
        "libpangocairo-1.0-0 is installed but its file /usr/lib/x86_64-linux-gnu/libpangocairo-1.0.so.0.5000.12 is not the package's own"),
    "zlib-replaced": ("manim", "test_libx264_encode_is_valid", None, "library-wrong-version",
        "zlib1g is installed but its file /lib/x86_64-linux-gnu/libz.so.1.2.13 is not the package's own"),
    "manimpango-files-removed": ("manim", "test_manimpango_renders_text", None, "python-module-missing",
        "the distribution ManimPango is installed but its files manimpango/__init__.py"),
    "latex-without-amsmath": ("manim", "test_mathtex_renders", None, "latex-package-missing",
        "LaTeX package amsmath.sty"),
    "ffmpeg-without-lavfi": ("manim", "test_libx264_encode_is_valid", None, "feature-not-compiled",
        "ffmpeg was built without the input format lavfi"),
    "ffmpeg-missing": ("manim", "test_libx264_encode_is_valid", None, "tool-missing",
        "ffmpeg not found in the target"),
    "bpy-missing-libxi": ("blender", "test_bpy_loads_cycles", None, "system-library-missing",
        "libXi.so.6"),
    "xorg-without-dummy-driver": ("xorg-glx", "test_xorg_starts", None, "system-library-missing",
        "Xorg module dummy"),
    "xorg-without-glx": ("xorg-glx", "test_glx_answers", None, "x-extension-missing",
        "no GLX extension"),
    "mesa-dri-driver-missing": ("xorg-glx", "test_glx_answers", None, "system-library-missing",
        "Mesa's DRI driver swrast_dri.so missing in the image"),
    "xorg-without-xkb-data": ("xorg-glx", "test_xorg_starts", None, "data-files-missing",
        "Xorg's keyboard data missing in the image (/usr/share/X11/xkb/rules/evdev"),
    "xorg-without-xdpyinfo": ("xorg-glx", "test_xorg_starts", None, "tool-missing",
        "xdpyinfo not found in the target"),
    "glxinfo-missing": ("xorg-glx", "test_glx_answers", None, "tool-missing",
        "glxinfo not found in the target"),
    "ffmpeg-without-libx264": ("manim", "test_libx264_encode_is_valid", None, "system-library-missing",
        "system library libx264.so."),
    "glx-vendor-library-truncated": ("xorg-glx", "test_glx_answers", None, "file-damaged",
        "libGLX_mesa.so.0.0.0 is damaged in the image (file too short"),
    "egl-driver-dependency-missing": ("xorg-glx", "test_egl_initialises_headless", None, "system-library-missing",
        "Mesa's driver swrast_dri.so cannot load: libz.so.1 missing in the image"),
    "eglinfo-missing": ("xorg-glx", "test_egl_initialises_headless", None, "tool-missing",
        "eglinfo not found in the target"),
    "vnc-missing": ("xorg-glx", "test_vnc_serves_display", None, "tool-missing",
        "x11vnc"),
    "vulkan-without-icd": ("xorg-glx", "test_vulkan_lists_a_device", None, "system-library-missing",
        "Vulkan found no driver"),
    "egl-without-vendor": ("xorg-glx", "test_egl_initialises_headless", None, "system-library-missing",
        "EGL found no driver"),
    "encoder-halves-its-output-and-ffprobe-lies": ("manim", "test_libx264_encode_is_valid", None, "output-invalid",
        "is not a playable video (PyAV"),
    "nvidia-userspace-from-debian": ("manim", "test_no_driver_files_baked_into_the_image", None, "driver-baked-in",
        "NVIDIA driver files baked into the image of driver 535."),
    "no-shell": ("xorg-glx", "test_xorg_starts", None, "tool-missing",
        "has no usable /bin/sh (OCI runtime exec failed: exec failed: unable to start container process: exec: \"/bin/sh\": "
        "stat /bin/sh: no such file or directory: unknown): dash is installed but its file /bin/sh is missing: reinstall dash"),
    "poppler-data-file-cut-short": ("manim", "test_installed_files_are_their_packages_own", None, "file-damaged",
        "/usr/share/poppler/cMap/Adobe-GB1/GBTpc-EUC-H of the package poppler-data is not the package's own"),
    "conffile-deleted": ("xorg-glx", "test_installed_files_are_their_packages_own", None, "data-files-missing",
        "/etc/host.conf of the package base-files is missing: reinstall base-files "
        "(apt-get install --reinstall -o Dpkg::Options::=--force-confmiss base-files)"),
    "bpy-colour-config-cut-short": ("blender", "test_cycles_frame_on_cpu", None, "config-invalid",
        "bpy/5.0/datafiles/colormanagement/config.ocio does not parse (OpenColorIO: yaml-cpp: "),
    "python-not-where-manifest-says": ("manim", "test_manimpango_renders_text", None, "tool-missing",
        "/opt/venv/bin/python not found in rendergate-known-bad/"),
    "manim-config-truncated": ("manim", "test_manim_scene_renders", None, "config-invalid",
        "manim/_config/default.cfg does not parse"),
    "bpy-libxrender-truncated": ("blender", "test_bpy_loads_cycles", None, "file-damaged",
        "libxrender1 is installed but its file /usr/lib/x86_64-linux-gnu/libXrender.so.1.3.0"),
    "bpy-libxkbcommon-replaced": ("blender", "test_bpy_loads_cycles", None, "library-wrong-version",
        "libxkbcommon0 is installed but its file /usr/lib/x86_64-linux-gnu/libxkbcommon.so.0.0.0 is not the package's own"),
    "blender-ffmpeg-without-libx264-encoder": ("blender", "test_parallel_render_and_stitch", None, "feature-not-compiled",
        "ffmpeg was built without the libx264 encoder"),
    "xorg-libudev-replaced": ("xorg-glx", "test_xorg_starts", None, "library-wrong-version",
        "libudev.so.1 lacks the version LIBUDEV_183 that Xorg needs"),
    "glxinfo-without-brief-option": ("xorg-glx", "test_glx_answers", None, "feature-not-compiled",
        "glxinfo does not know the option -B"),
    "glx-module-replaced": ("xorg-glx", "test_glx_answers", None, "file-damaged",
        "Xorg's module glx (libglx.so) is not that module: it has no glxModuleData (replaced or damaged): xserver-xorg-core is"),
    "mesa-driver-replaced": ("xorg-glx", "test_egl_initialises_headless", None, "file-damaged",
        "Mesa's driver /usr/lib/x86_64-linux-gnu/dri/swrast_dri.so exports none of its own entry points"),
    "vulkan-driver-replaced": ("xorg-glx", "test_vulkan_lists_a_device", None, "file-damaged",
        "the Vulkan driver /usr/lib/x86_64-linux-gnu/libvulkan_lvp.so exports no Vulkan entry point"),
    "xorg-binary-not-executable": ("xorg-glx", "test_xorg_starts", None, "file-damaged",
        "/usr/lib/xorg/Xorg is not executable in the image (the /usr/bin/Xorg wrapper runs it)"),
    "vnc-not-executable": ("xorg-glx", "test_vnc_serves_display", None, "file-damaged",
        "/usr/bin/x11vnc of x11vnc is there but not executable"),
    "dvisvgm-not-executable": ("manim", "test_mathtex_renders", None, "file-damaged",
        "dvisvgm is not executable in the image"),
    "manimpango-extension-replaced": ("manim", "test_manimpango_renders_text", None, "file-damaged",
        "the Python extension module cmanimpango is not that module"),
    "dvisvgm-stand-in": ("manim", "test_mathtex_renders", None, "file-damaged",
        "dvisvgm converts no DVI file to SVG: dvisvgm is installed but its file /usr/bin/dvisvgm is not the package's own"),
    "cycles-addon-file-emptied": ("blender", "test_bpy_loads_cycles", None, "file-damaged",
        "did not load (/opt/venv/lib/python3.11/site-packages/bpy/5.0/scripts/addons_core/cycles): the wheel bpy bundles it: its file "),
    "vnc-stand-in": ("xorg-glx", "test_vnc_serves_display", None, "file-damaged",
        "x11vnc is installed but its file /usr/bin/x11vnc is not the package's own"),
    "packaged-files-replaced-by-a-folder-and-a-fifo": ("xorg-glx", "test_installed_files_are_their_packages_own", None,
        "file-damaged", "of the package coreutils is not a file (a folder, a socket, a FIFO or a device is in its place) "
        "(and 1 more: /usr/bin/"),
    "program-not-executable": ("xorg-glx", "test_installed_files_are_their_packages_own", None, "file-damaged",
        "/usr/bin/glxgears.x86_64-linux-gnu of the package mesa-utils-bin is not executable (no x bit: chmod 0755 it): reinstall mesa-utils-bin"),
    "xorg-conf-d-snippet-invalid": ("xorg-glx", "test_xorg_starts", None, "config-invalid",
        "/etc/X11/xorg.conf.d/00-keyboard.conf does not parse (Xorg: line 4"),
}


# Images no container of which can run a check: each check fails at its setup ("error").
CANNOT_START = {"no-shell"}


@pytest.mark.parametrize("name", CASES)
def test_known_bad_image_fails_with_its_diagnosis(name, known_bad_image, installed, tmp_path):
    variant, check, requirement, cause, words = CASES[name]
    repo = user_repo(tmp_path, {variant: (ROOT / "images" / variant / "manifest.toml").read_text()})
    run = run_in_user_repo(installed, repo, f"--variant={variant}", f"--image={known_bad_image(name)}", "--allow-no-gpu",
                           "-k", check)
    result = run.outcome(check, variant, requirement)
    # A target that could not be opened fails the check at its setup: "error", the check never ran.
    expected = "error" if name in CANNOT_START else "failed"
    assert (result["outcome"], result["cause"]) == (expected, cause), run.output
    assert words in result["message"]
    assert "Traceback" not in result["message"] and "\n" not in result["message"]
    assert run.returncode == 1
    assert run.leftover == []
    assert _contradicted(known_bad_image(name), variant, result["message"]) == [], result["message"]


def _contradicted(image: str, variant: str, message: str) -> list[str]:
    """The advice to install something the image already has (asked of the image itself, by dpkg
    and by its Python's metadata): a line must never say so."""
    python = load_variant(ROOT / "images" / variant).settings.python
    found = []
    for what in advised_installs(message):
        asked = (f"dpkg-query -W -f='${{db:Status-Status}}' {what} 2>/dev/null | grep -qx installed || "
                 f"{python} -c 'import importlib.metadata as m; m.version(\"{what}\")' 2>/dev/null")
        done = subprocess.run(["docker", "run", "--rm", "--entrypoint", "/bin/sh", image, "-c", asked], capture_output=True,
                              timeout=120)
        if done.returncode == 0:
            found.append(f"install {what}: the image has it")
    return found


@pytest.mark.parametrize("declared", ["535.261.03", "550.54.14"])
def test_an_image_that_carries_its_driver_is_held_to_the_version_it_declares(declared, known_bad_image, installed, tmp_path):
    """The image with Debian's NVIDIA 535.261.03 user space, declared as carrying its driver
    (run.bundled_driver): of that version, its files pass, and whether the host's kernel module
    is the same only a GPU host says (here: not validated); of another, it fails naming both."""
    manifest = (ROOT / "images" / "manim" / "manifest.toml").read_text().replace(
        "[run]\n", f'[run]\nbundled_driver = "{declared}"\n', 1)
    repo = user_repo(tmp_path, {"manim": manifest})
    check = "test_no_driver_files_baked_into_the_image"
    run = run_in_user_repo(installed, repo, "--variant=manim", f"--image={known_bad_image('nvidia-userspace-from-debian')}",
                           "--allow-no-gpu", "-k", check)
    result = run.outcome(check, "manim", None)
    if declared == "535.261.03":
        assert result["outcome"] == "no-gpu", run.output
        assert "the image carries driver 535.261.03 (run.bundled_driver)" in result["message"]
    else:
        assert (result["outcome"], result["cause"]) == ("failed", "driver-version-mismatch"), run.output
        assert 'declares run.bundled_driver = "550.54.14" but carries NVIDIA driver files of 535.261.03' in result["message"]
    assert run.leftover == []
