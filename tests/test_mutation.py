"""Mutation testing (rendergate/mutation.py): the trace of what the checks use is the kernel's,
on a real image; the plan spreads mutants over components and kinds; a mutant is judged by what
newly failed and whether its line names it; `rendergate mutate` runs a small fixed sample on a
real variant (the machinery under test: the full run is a benchmark, `make mutate`), and an
interrupted run leaves no image nor container behind and says it is not complete."""
import io
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from conftest import BASE_IMAGE, CLI_TIMEOUT, INTERRUPTED_RUN_TIMEOUT, ROOT, TIMED_SUITE_TIMEOUT, at_most, end_tree, rendergate_cli
from rendergate.core.judging import judge, state_of
from rendergate.core.manifest import load_variant
from rendergate.core.outcomes import Outcome, State
from rendergate.core.verdict import CheckResult, Verdict
from rendergate.engines.docker_engine import Engine
from rendergate.mutation.judging import Finding, advised_installs, installed_of, judge_mutant
from rendergate.mutation.operators import REFUSALS, Kind, Mutant, UsedFile, refusing_wrapper
from rendergate.mutation.planning import plan
from rendergate.mutation.run import Suite
from rendergate.mutation.trace import FileTrace, image_attrs, image_layers, not_mutated_because

GOOD = "rendergate/xorg-glx:dev"


def used(path, size=100, executable=False, owner=None, library=None, config=None):
    return UsedFile(path, size, executable, owner, library, config)


def test_the_trace_sees_what_a_container_of_the_image_opens_and_runs():
    """Real: inotify on the layers of a real image while a container of it runs xdpyinfo; the
    file names its package from dpkg's lists in the layers."""
    engine = Engine()
    with FileTrace(image_layers(image_attrs(engine, GOOD))) as trace:
        engine.client.containers.run(GOOD, ["sh", "-c", "xdpyinfo -version"], remove=True, user="root")
        time.sleep(0.5)
    files = {f.path: f for f in trace.used_files()}
    assert files["usr/bin/xdpyinfo"].owner == "x11-utils" and files["usr/bin/xdpyinfo"].executable
    assert any(p.startswith("usr/lib/x86_64-linux-gnu/libX11.so.6") for p in files)  # what ldd would list, loaded
    assert not trace.lost_events
    links = trace.link_names()  # what a line may call a file by, from the same walk of the layers
    assert "libX11.so.6" in links["usr/lib/x86_64-linux-gnu/libX11.so.6.4.0"] and "sh" in links["usr/bin/dash"]


def test_the_plan_spreads_over_components_and_kinds_and_is_fixed_by_its_seed():
    files = ([used(f"usr/lib/x86_64-linux-gnu/libbig{i}.so.1", owner="big") for i in range(50)]
             + [used("usr/bin/tool", executable=True, owner="tools"), used("usr/share/X11/xkb/rules/evdev", owner="xkb-data"),
                used("usr/lib/x86_64-linux-gnu/libsmall.so.2", owner="small")])
    mutants = plan(files, 8, seed=3)
    assert len(mutants) == 8 and len({(m.kind, m.path) for m in mutants}) == 8
    assert {m.component for m in mutants} == {"big", "tools", "xkb-data", "small"}  # the few not crowded out by the many
    assert {Kind.DELETE, Kind.TRUNCATE, Kind.EXIT_NONZERO, Kind.DELETE_FOLDER} <= {m.kind for m in mutants[:4]}  # each kind first
    assert plan(files, 8, seed=3) == mutants and plan(files, 8, seed=4) != mutants
    programs = [used(f"opt/render/tools/tool{i}", executable=True, owner="render") for i in range(5)]
    assert {m.kind for m in plan(programs, 5, seed=1)} == {Kind.DELETE, Kind.TRUNCATE, Kind.EXIT_NONZERO, Kind.NOT_EXECUTABLE,
                                                           Kind.DELETE_FOLDER}  # each kind in turn where it applies
    for m in mutants:
        if m.kind in (Kind.EXIT_NONZERO, Kind.NOT_EXECUTABLE):
            assert m.path == "usr/bin/tool"  # only a program is made to exit 1 or lose its x bit
        if m.kind is Kind.DELETE_FOLDER:
            assert m.path == "usr/share/X11/xkb/rules"  # never a shared folder such as usr/lib/x86_64-linux-gnu


FONTS_CONF = """<?xml version="1.0"?>
<!-- <dir>/usr/share/commented/out</dir> -->
<fontconfig>
	<dir>/usr/share/fonts</dir>
	<cachedir>/var/cache/fontconfig</cachedir>
</fontconfig>
"""


def test_the_new_operators_replace_a_library_corrupt_a_configuration_and_wrap_a_tool():
    files = [used("usr/lib/x86_64-linux-gnu/libz.so.1.2.13", owner="zlib1g", library="2/62"),
             used("usr/lib/x86_64-linux-gnu/libz-other.so.1", owner="zlib1g", library="2/62"),  # its own component: no donor
             used("usr/lib/i386-linux-gnu/libpng16.so.16", owner="libpng16-16", library="1/3"),  # 32-bit: no donor either
             used("usr/lib/x86_64-linux-gnu/libpng16.so.16", owner="libpng16-16", library="2/62"),
             used("etc/fonts/fonts.conf", owner="fontconfig-config", config=FONTS_CONF),
             used("usr/share/fontconfig/conf.avail/10-hinting.conf", owner="fontconfig-config", config=FONTS_CONF),
             used("usr/bin/ffmpeg", executable=True, owner="ffmpeg"), used("usr/bin/ffprobe", executable=True, owner="ffmpeg"),
             used("usr/bin/sh", executable=True, owner="dash")]
    mutants = plan(files, 30, seed=5)
    for m in mutants:
        if m.kind is Kind.REPLACE_LIBRARY:
            assert m.path.startswith("usr/lib/x86_64") and m.donor.startswith("usr/lib/x86_64")
            assert {m.path, m.donor} & {"usr/lib/x86_64-linux-gnu/libpng16.so.16"}  # from another component, same machine
            assert m.command() == f"cat /{m.donor} > /{m.path}"  # in place: the file keeps its mode and owner
        if m.kind is Kind.CONFIG_CUT_SHORT:
            assert m.path.endswith(".conf") and FONTS_CONF.startswith(m.content) and not m.content.endswith("\n") and len(m.content) < len(FONTS_CONF)
        if m.kind is Kind.CONFIG_NAMES_NOTHING:  # a value, never the commented one, now names nothing
            assert "/usr/share/commented/out" in m.content and m.content.count("rendergate-none-") == 1
            assert m.content.replace("rendergate-none-", "") == FONTS_CONF
        if m.kind is Kind.TOOL_REFUSES:
            assert m.path == "usr/bin/ffmpeg" and "exec /usr/bin/ffmpeg.rendergate-real" in m.content
    kinds = {m.kind for m in mutants}
    assert {Kind.REPLACE_LIBRARY, Kind.CONFIG_CUT_SHORT, Kind.CONFIG_NAMES_NOTHING, Kind.TOOL_REFUSES} <= kinds
    assert "content" not in str(Mutant("m1", Kind.DELETE, "x", "y"))  # the planted file is no part of what is said of it


@pytest.mark.parametrize("image, tool, option", [("rendergate/manim:dev", "ffmpeg", "-rendergatebogus"),
                                                 ("rendergate/manim:dev", "ffmpeg", "--rendergatebogus"),
                                                 ("rendergate/manim:dev", "dvisvgm", "--rendergatebogus"),
                                                 ("rendergate/manim:dev", "dvisvgm", "-Q"),
                                                 ("rendergate/xorg-glx:dev", "Xorg", "-rendergatebogus"),
                                                 ("rendergate/xorg-glx:dev", "glxinfo", "-Q"),
                                                 ("rendergate/xorg-glx:dev", "xdpyinfo", "-rendergatebogus")])
def test_a_wrapped_tool_refuses_in_the_real_tools_words(image, tool, option):
    """Real: the real tool and the mutant's wrapper in its place, each given an option no build
    knows: every line the wrapper says, the real tool says too, with the same exit status; an
    option-less call still reaches the real program."""
    engine = Engine()
    path = engine.client.containers.run(image, ["sh", "-c", f"command -v {tool}"], entrypoint=[], remove=True,
                                        user="root").decode().strip().lstrip("/")
    wrapped = Mutant("m1", Kind.TOOL_REFUSES, path, "tool", content=refusing_wrapper(tool, f"/{path}.rendergate-real"))
    attrs = image_attrs(engine, image)
    built, _ = engine.client.images.build(fileobj=io.BytesIO(wrapped.context(attrs["Id"], "")), custom_context=True,
                                          tag="rendergate-mutant/wrapper-test:latest", rm=True, forcerm=True)
    try:
        said = {}
        for name in (image, built.id):
            ran = engine.client.containers.run(name, ["sh", "-c", f"{tool} {option} </dev/null 2>&1; echo rc=$?"],
                                               entrypoint=[], remove=True, user="root").decode()
            said[name] = ran
        real, fake = said[image], said[built.id]
        assert [line for line in fake.splitlines() if line.strip() not in real] == [], (real, fake)
        assert real.strip().splitlines()[-1] == fake.strip().splitlines()[-1]  # rc=N
        assert tool in REFUSALS
        version = engine.client.containers.run(built.id, ["sh", "-c", f"{tool} </dev/null 2>&1; echo rc=$?"], entrypoint=[],
                                               remove=True, user="root").decode()
        real = engine.client.containers.run(image, ["sh", "-c", f"{tool} </dev/null 2>&1; echo rc=$?"], entrypoint=[],
                                            remove=True, user="root").decode()
        assert version.splitlines()[-1] == real.splitlines()[-1]  # no option: the real program ran
    finally:
        engine.client.images.remove("rendergate-mutant/wrapper-test:latest", force=True)


def test_a_file_without_an_owner_is_named_by_where_it_lives():
    assert used("opt/venv/lib/python3.11/site-packages/srt.py").component == "srt"
    assert used("opt/blender/4.2/scripts/addons/cycles/__init__.py").component == "blender"


def test_caches_and_the_c_library_are_not_mutated():
    assert not_mutated_because(used("usr/lib/python3/dist-packages/numpy/__pycache__/x.cpython-311.pyc"))
    assert not_mutated_because(used("usr/lib/x86_64-linux-gnu/libc.so.6"))
    assert not_mutated_because(used("usr/lib/x86_64-linux-gnu/libpango-1.0.so.0.5000.12")) is None


def check(name, outcome, message="", cause=None, image="mutant"):
    """A verdict's check entry; its test id names the image, as the suites' ids do."""
    return CheckResult(f"suites/x.py::{name}[v@{image}]", name, "", None, Outcome(outcome), cause, message)


def holding(*checks) -> Verdict:
    """A verdict of these checks (all that judging a mutant reads)."""
    return Verdict("v", "run-1", "docker", "sha256:x", [], {}, {}, checks=list(checks))


def test_a_mutant_is_judged_by_what_newly_failed_and_whether_its_line_names_it():
    library = Mutant("m01", Kind.DELETE, "usr/lib/x86_64-linux-gnu/libpango-1.0.so.0.5000.12", "libpango-1.0-0")
    baseline = holding(check("gpu", "failed", "cannot validate: no NVIDIA GPU", image="good"), check("text", "passed", image="good"),
                       check("tex", "passed", image="good"), check("speed", "passed", image="good"))

    def finding(*checks, mutant=library):
        return judge_mutant(mutant, baseline, holding(check("gpu", "failed", "cannot validate: no NVIDIA GPU"), *checks),
                            installed={"libpango-1-0-0", "pycairo"})[0]

    assert finding(check("text", "passed")) is Finding.UNDETECTED  # a check failing on the good image detects nothing
    assert finding(check("text", "failed", "system library libpango-1.0.so.0 missing", "system-library-missing")) \
        is Finding.ROOT_CAUSED
    assert finding(check("text", "failed", "the probe failed (exit 1), unknown cause: boom", "command-failed")) \
        is Finding.UNKNOWN_CAUSE
    assert finding(check("text", "failed", "LaTeX package standalone.cls missing", "latex-package-missing")) \
        is Finding.OTHER_CAUSE
    named = check("text", "failed", "system library libpango-1.0.so.0 missing", "system-library-missing")
    assert finding(named, check("tex", "failed", "LaTeX package standalone.cls missing", "latex-package-missing")) \
        is Finding.OTHER_CAUSE  # one line that blames something else misleads, whatever the others say
    assert finding(named, check("tex", "failed", "`latex` did not finish within 60 s and was killed", "timeout")) \
        is Finding.ROOT_CAUSED  # a line that claims nothing does not
    # Strictly: the kind of fault must be the one planted, and the advice must hold on the image.
    assert finding(check("text", "failed", "libpango-1.0.so.0 is damaged in the image (file too short)", "file-damaged")) \
        is Finding.WRONG_KIND  # it was deleted, not damaged
    truncated = Mutant("m05", Kind.TRUNCATE, library.path, library.component)
    assert finding(check("text", "failed", "libpango-1.0.so.0 is damaged in the image (file too short)", "file-damaged"),
                   mutant=truncated) is Finding.ROOT_CAUSED
    assert finding(check("text", "failed", "system library libpango-1.0.so.0 missing: install libpango-1.0-0",
                         "system-library-missing")) is Finding.WRONG_ADVICE  # the image has that package
    assert finding(check("text", "failed", "libpango-1.0.so.0 missing: reinstall libpango-1.0-0 (apt-get install --reinstall "
                                           "libpango-1.0-0)", "system-library-missing")) is Finding.ROOT_CAUSED
    assert finding(check("text", "failed", "the probe failed (exit 1), unknown cause: libpango-1.0.so.0: boom",
                         "command-failed")) is Finding.UNKNOWN_CAUSE  # named in a quote, but no kind of fault claimed
    assert finding(check("speed", "undecided", "too noisy")) is Finding.UNDETECTED  # timing noise is not the mutant
    assert finding(check("text", "skipped", "ManimPango not importable: skipped")) is Finding.UNKNOWN_CAUSE  # no longer passing
    latex = Mutant("m04", Kind.DELETE, "usr/bin/latex", "texlive-latex-base")
    assert latex.named_in("latex: command not found") and not latex.named_in("standalone.cls missing [latex-package-missing]")
    assert {"libpango-1.0.so", "libpango", "pango"} <= library.names()
    assert not library.named_in("ManimPango cannot lay out text") and library.named_in("libpango-1.0.so.0: cannot open")
    shell = Mutant("m03", Kind.EXIT_NONZERO, "usr/bin/dash", "dash", aliases=("sh",))
    assert shell.named_in("the image has no usable /bin/sh") and not shell.named_in("shared object")
    assert "__init__" not in Mutant("m02", Kind.DELETE, "usr/lib/python3/dist-packages/cairo/__init__.py", "pycairo").names()


def test_an_image_that_cannot_start_is_judged_from_its_complete_failed_verdict(known_bad_image, tmp_path):
    """Real: the suites on an image with no shell (every check fails at its start) give a complete
    verdict naming that very image, so its mutant is judged like any other: the line names the
    shell's file and package, and says it is missing."""
    image = known_bad_image("no-shell")
    suite = Suite(ROOT / "images", load_variant(ROOT / "images" / "xorg-glx"), True, BASE_IMAGE)
    verdict = suite.run(image, Engine().client.images.get(image).id, tmp_path / "run")
    assert verdict is not None and state_of(judge(verdict)) is State.FAILED, (tmp_path / "run" / "pytest.log").read_text()
    baseline = holding(*(replace(c, outcome=Outcome.PASSED) for c in verdict.checks))
    shell = Mutant("m01", Kind.DELETE, "usr/bin/dash", "dash", aliases=("sh",))
    finding, failures = judge_mutant(shell, baseline, verdict, {"dash"})
    assert finding is Finding.ROOT_CAUSED, failures


def test_what_a_line_advises_to_install_is_read_as_a_reviewer_would():
    assert advised_installs("cairo missing: pip install pycairo") == ["pycairo"]
    assert advised_installs("libz.so.1 missing: reinstall zlib1g (apt-get install --reinstall zlib1g)") == []
    assert advised_installs("ManimPango broken: reinstall it (pip install --force-reinstall ManimPango)") == []
    assert advised_installs("Xorg module dummy missing: install its package (driver dummy: xserver-xorg-video-dummy)") \
        == ["xserver-xorg-video-dummy"]
    assert advised_installs("ffmpeg was built without libx264: install an ffmpeg configured with it") == []
    assert advised_installs("keyboard data missing: install xkb-data (xkeyboard-config)") == ["xkb-data", "xkeyboard-config"]


def test_what_an_image_has_installed_is_read_from_its_layers():
    """Real: dpkg's status and the dist-info folders of a real image's layers."""
    installed = installed_of(image_layers(image_attrs(Engine(), "rendergate/manim:dev")))
    assert {"ffmpeg", "libcairo2", "manimpango", "pycairo", "manim"} <= installed
    assert "xserver-xorg-video-dummy" not in installed


@pytest.mark.serial  # alone: any other container of the image's layers would add to its trace
def test_rendergate_mutate_runs_a_small_fixed_sample_on_a_real_variant(tmp_path):
    # The good image's traced run and three mutants' runs of the xorg-glx suites: about 60 s alone.
    run = rendergate_cli(f"--images-dir={ROOT / 'images'}", f"--base-image={BASE_IMAGE}", "mutate", "xorg-glx", "--n=3",
                         "--seed=2", "--allow-no-gpu", reports=tmp_path, timeout=TIMED_SUITE_TIMEOUT)
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads((tmp_path / "mutate" / "xorg-glx.json").read_text())
    assert result["complete"] and len(result["results"]) == 3 and result["used_files"] > 50
    # The packages owning what the checks used (the promotion review marks them); its runs record no SBOM, whose
    # listing of every package would count as files the checks use.
    assert "xserver-xorg-core" in result["used_owners"]
    assert not list((tmp_path / "mutate" / "xorg-glx").rglob("*.cdx.json"))
    scores = result["scores"]
    detected = [r for r in result["results"] if r["finding"] not in ("undetected", "not built", "not judged")]
    assert scores["detected"] == len(detected) and scores["judged"] == 3
    assert detected  # this fixed sample of this image holds defects the suites catch: none means the judging broke
    for r in detected:
        assert r["failures"] and all(f["line"] for f in r["failures"])
    page = (tmp_path / "mutate" / "xorg-glx.html").read_text()
    assert page.count('data-finding="') == 3 and "root-caused" in page
    assert f"detected {scores['detected']}/3" in run.stdout
    assert not Engine().client.images.list(name="rendergate-mutant/xorg-glx")


@pytest.mark.serial
def test_an_interrupted_mutation_run_leaves_nothing_behind_and_says_so(tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "rendergate", f"--images-dir={ROOT / 'images'}",
                                f"--reports-dir={tmp_path}", f"--base-image={BASE_IMAGE}", "mutate", "xorg-glx", "--n=2",
                                "--allow-no-gpu"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    try:
        with at_most(CLI_TIMEOUT + INTERRUPTED_RUN_TIMEOUT):  # the good image's traced run (10 s), then its end
            for line in process.stdout:
                if line.startswith("the good image:"):
                    break
            time.sleep(4)  # the first mutant is being built or validated
            process.send_signal(signal.SIGTERM)
            output = process.communicate()[0]
    finally:
        end_tree(process)  # still running only where the test failed: nothing of it left behind
    assert process.returncode == 130, output
    assert "interrupted" in output
    result = json.loads((tmp_path / "mutate" / "xorg-glx.json").read_text())
    assert result["complete"] is False and "PARTIAL" in (tmp_path / "mutate" / "xorg-glx.html").read_text()
    engine = Engine()
    assert not engine.client.images.list(name="rendergate-mutant/xorg-glx")
    assert not [c for c in engine.client.containers.list(all=True) if c.attrs["Config"]["Image"].startswith("rendergate-mutant/")]
    assert os.path.exists(tmp_path / "mutate" / "xorg-glx" / "good" / "pytest.log")
