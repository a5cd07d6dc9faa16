"""rendergate as a platform team uses it: built into a wheel, installed into a fresh venv outside
this checkout, and run by `pytest -n auto` in a repo of theirs that holds only manifests, on
images rendergate has never built: an image FROM the plain base with an entrypoint and a user of
its own, our images with an entrypoint or another user, and an image pulled with the engine's
stored login from a registry that requires one."""
import json
import re
import shutil
import subprocess
import time

import pytest

from conftest import (
    BASE_IMAGE,
    CLI_TIMEOUT,
    ROOT,
    SMALL_REPO,
    SMALL_RUN_TIMEOUT,
    SUITE_TIMEOUT,
    bounded,
    loopback_registry,
    require_tool,
    run_in_user_repo,
    user_repo,
)

STUDIO_IMAGE = "rendergate-studio/render:1.0"
STUDIO_MANIFEST = f"""\
description = "The studio's render image: NVENC encodes, and an OpenGL player on a virtual display"
image = "{STUDIO_IMAGE}"

[requirements]
gpu = true
nvenc = ["h264_nvenc"]
xorg = true
vnc = true
egl = true

[run]
driver_capabilities = ["compute", "utility", "video", "graphics", "display"]
python = "python3"

[workloads]
encode = {{ size = "640x360", frames = 30 }}

[thresholds]
nvenc_speedup = 2.0
"""
# The studio's own check, beside rendergate's suites: the same fixtures, run on every variant.
STUDIO_CHECK = '''\
def test_studio_pipeline_encoder_is_there(target):
    assert " libx264 " in target.run("ffmpeg -hide_banner -encoders").stdout
'''
CPU_PROVABLE = {"passed", "no-gpu", "not-declared", "not-applicable"}


@pytest.fixture(scope="module")
def studio_image(engine, good_images):
    """The studio's image, built by its own Dockerfile FROM the plain local base."""
    engine.client.images.build(path=str(ROOT / "tests" / "studio_image"), tag=STUDIO_IMAGE, rm=True, forcerm=True,
                               buildargs={"BASE_IMAGE": BASE_IMAGE})
    return STUDIO_IMAGE


def venv_python(installed, code: str) -> str:
    done = subprocess.run([installed / "bin" / "python", "-c", code], capture_output=True, text=True, cwd="/",
                          timeout=CLI_TIMEOUT)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_wheel_carries_the_plugin_suites_and_assets(installed):
    found = json.loads(venv_python(installed, """if True:
        import json, importlib.metadata as m, importlib.util
        from rendergate.core import assets
        print(json.dumps({
            "plugins": [e.value for e in m.entry_points(group="pytest11") if e.name == "rendergate"],
            "scripts": [e.value for e in m.entry_points(group="console_scripts") if e.name == "rendergate"],
            "suites": sorted(p.name for p in assets.SUITES.glob("test_*.py")),
            "probes": sorted(p.name for p in assets.PROBES.glob("*.py")),
            "workloads": sorted(p.name for p in assets.WORKLOADS.glob("*.py")),
            "references": sorted(p.name for p in assets.REFERENCES.glob("*.png")),
            "table": assets.CAPABILITY_TABLE.is_file(),
            "where": str(assets.SUITES),
            "modal": importlib.util.find_spec("modal") is not None,
            "pytest": m.version("pytest")}))"""))
    assert found["plugins"] == ["rendergate.plugin"] and found["scripts"] == ["rendergate.__main__:main"]
    assert found["where"].startswith(str(installed)), "rendergate must come from the venv, not this checkout"
    assert found["suites"] == sorted(p.name for p in (ROOT / "suites").glob("test_*.py"))
    assert found["probes"] == sorted(p.name for p in (ROOT / "rendergate" / "probes").glob("*.py"))
    assert found["workloads"] == ["cycles_scene.py", "manim_scene.py"]
    assert found["references"] == sorted(p.name for p in (ROOT / "fixtures" / "references").glob("*.png"))
    assert found["table"] and found["modal"] is False  # Modal is an optional extra
    assert found["pytest"].startswith("8.")  # the checkout's own venv runs pytest 9: both work


def test_a_user_repo_validates_its_own_image(installed, studio_image, engine, tmp_path):
    repo = user_repo(tmp_path, {"render": STUDIO_MANIFEST})
    (repo / "checks").mkdir()
    (repo / "checks" / "test_studio.py").write_text(STUDIO_CHECK)
    run = run_in_user_repo(installed, repo, "-n", "auto", "--allow-no-gpu", "--html=reports/report.html",
                           "--self-contained-html")
    assert run.returncode == 0, run.output
    verdict = run.verdicts["render"]
    assert verdict["complete"] and verdict["target"] == "docker"
    assert verdict["image"]["ref"] == studio_image and verdict["image"]["digest"] == engine.image_digest(studio_image)
    assert verdict["containers_started"] == 1 and run.leftover == []
    for name, requirement in verdict["requirements"].items():  # every declared requirement had its checks run
        assert requirement["checks"] >= 1 and requirement["outcome"] in ("passed", "not-validated"), (name, run.output)
    outcomes = {c["check"]: c["outcome"] for c in run.checks if c["outcome"] != "not-declared"}
    assert {check for check, outcome in outcomes.items() if outcome == "passed"} >= {
        "test_encoder_listed", "test_xorg_starts", "test_glx_answers", "test_vnc_serves_display",
        "test_egl_initialises_headless", "test_libx264_encode_is_valid", "test_capabilities_cover_requirements",
        "test_studio_pipeline_encoder_is_there"}
    assert all(f"[render@{studio_image}" in c["nodeid"] for c in run.checks)  # test ids name the image checked
    report = (run.reports / "report.html").read_text()
    assert f"{studio_image} ({verdict['image']['digest']})" in report and f"render ({studio_image})" in report


# A check of the studio's own, with a requirement key of its own: one file, in a folder the repo's
# ini names (rendergate_checks), declared through rendergate.core.requirements as rendergate's suites are.
STUDIO_CODEC_CHECK = '''\
"""The studio's encoders: each one the manifest lists is compiled into the image's ffmpeg."""
from rendergate.core.diagnosis import Cause, CheckFailed
from rendergate.core.requirements import declare
from rendergate.core.schema import list_of, word
from rendergate.plugin import requires
from studio_runbook import RUNBOOK  # a helper module beside it

STUDIO_CODECS = declare("studio_codecs", list_of(word), 'a list of ffmpeg encoders, e.g. ["libx264"]',
                        "each of the studio's encoders is compiled into ffmpeg", capabilities={"compat32"})
pytestmark = requires(STUDIO_CODECS)


def test_studio_codec_compiled(target, requirement):
    if f" {requirement} " not in target.run("ffmpeg -hide_banner -encoders").stdout:
        raise CheckFailed(Cause.FEATURE_NOT_COMPILED, f"the studio's encoder {requirement} is not in the image's "
                                                      f"ffmpeg: build ffmpeg with it ({RUNBOOK})")
'''


def test_a_check_of_ones_own_is_one_file_with_its_own_manifest_key(installed, studio_image, tmp_path):
    """A user's check module (outside rendergate's suites) registers `studio_codecs`: a manifest may
    say it, its checks run per item and fail with their own diagnosis, the driver-capability check
    holds the container to what it declares it needs, and it is in the verdict and the matrix."""
    manifest = STUDIO_MANIFEST.replace("[run]", 'studio_codecs = ["libx264", "studio_prores"]\n\n[run]')
    repo = user_repo(tmp_path, {"render": manifest})
    (repo / "checks").mkdir()
    (repo / "checks" / "test_studio_codecs.py").write_text(STUDIO_CODEC_CHECK)
    (repo / "checks" / "studio_runbook.py").write_text('RUNBOOK = "studio runbook 7"\n')
    (repo / "pytest.ini").write_text("[pytest]\nrendergate_checks = checks\n")
    run = run_in_user_repo(installed, repo, "-n", "2", "--allow-no-gpu", "-k", "studio or capabilities",
                           "--html=reports/report.html", "--self-contained-html")
    assert run.returncode == 1, run.output
    assert run.outcome("test_studio_codec_compiled", "render", "libx264")["outcome"] == "passed"
    missing = run.outcome("test_studio_codec_compiled", "render", "studio_prores")
    assert missing["outcome"] == "failed" and missing["cause"] == "feature-not-compiled"
    assert missing["message"].startswith("the studio's encoder studio_prores is not in the image's ffmpeg: build "
                                         "ffmpeg with it (studio runbook 7)")
    uncovered = run.outcome("test_capabilities_cover_requirements", "render")
    assert uncovered["outcome"] == "failed" and "studio_codecs needs compat32" in uncovered["message"], run.output
    verdict = run.verdicts["render"]
    assert "studio_codecs" in verdict["declared"] and verdict["requirements"]["studio_codecs"]["outcome"] == "failed"
    assert verdict["state"] == "failed" and any(line.startswith("FAILED studio_codecs: ") for line in verdict["summary"])
    report = (run.reports / "report.html").read_text()
    assert "studio_codecs" in report and "test_studio_codec_compiled[studio_prores]" in report
    assert "each of the studio&#x27;s encoders is compiled into ffmpeg" in report  # the matrix reads the registry

    # A key no module declares is still a manifest error, naming the file and the key, before any container.
    shutil.rmtree(run.reports)
    (repo / "images" / "render" / "manifest.toml").write_text(manifest.replace("studio_codecs =", "studio_codex ="))
    typo = run_in_user_repo(installed, repo, "--allow-no-gpu")
    assert typo.returncode == 4 and "Traceback" not in typo.output, typo.output
    assert "unknown key 'requirements.studio_codex'" in typo.output and "studio_codecs" in typo.output
    assert typo.verdicts == {}


@pytest.mark.parametrize("variation, variant", [
    ("manim-entrypoint", "manim"), ("manim-non-root", "manim"), ("xorg-glx-numeric-user", "xorg-glx"),
    ("manim-without-ffprobe", "manim"), ("xorg-glx-debian-python-packages", "xorg-glx")])
def test_images_as_they_come_pass(variation, variant, known_good_image, installed, tmp_path):
    """An entrypoint, a user of the image's own (named, or numeric with no home), no ffprobe
    (rendergate judges outputs with its own decoder), a Python module from Debian (its build's
    RECORD beside it): the image is as good as the one it varies, and passes all it can without a GPU."""
    image = known_good_image(variation)
    repo = user_repo(tmp_path, {variant: (ROOT / "images" / variant / "manifest.toml").read_text()})
    run = run_in_user_repo(installed, repo, "-n", "2", f"--variant={variant}", f"--image={image}", "--allow-no-gpu",
                           "-m", "not timed")
    assert run.returncode == 0, run.output
    assert {c["outcome"] for c in run.checks} <= CPU_PROVABLE, run.output
    assert run.verdicts[variant]["image"]["ref"] == image and run.leftover == []
    passed = {c["check"] for c in run.checks if c["outcome"] == "passed"}
    assert {"manim": {"test_manimpango_renders_text", "test_mathtex_renders", "test_manim_scene_renders",
                      "test_libx264_encode_is_valid"},
            "xorg-glx": {"test_xorg_starts", "test_glx_answers", "test_vnc_serves_display",
                         "test_vulkan_lists_a_device"}}[variant] <= passed


@pytest.fixture(scope="module")
def authenticated_registry(tmp_path_factory):
    """A loopback registry with htpasswd logins (the registry asks the engine for credentials)."""
    htpasswd = require_tool("htpasswd", "apache2-utils")
    folder = tmp_path_factory.mktemp("auth-registry")
    user, password = "studio-ci", "pw-" + str(time.time_ns())[-10:]
    (folder / "htpasswd").write_text(subprocess.run([htpasswd, "-Bbn", user, password], capture_output=True,
                                                    text=True, check=True, timeout=CLI_TIMEOUT).stdout)
    auth = f"auth:\n  htpasswd:\n    realm: rendergate-tests\n    path: {folder / 'htpasswd'}\n"
    with loopback_registry(folder, auth) as address:
        yield address, user, password


def test_an_image_is_pulled_with_the_engines_stored_login(authenticated_registry, small_image, installed, engine,
                                                          tmp_path):
    """Pushed and pulled: the small image (a few MB; a render image took minutes beside the rest of
    the suite), checked by a check of the repo's own (tests/small_repo)."""
    address, user, password = authenticated_registry
    logged_in, nobody = tmp_path / "docker-config", tmp_path / "no-login"
    nobody.mkdir()
    subprocess.run(["docker", "--config", logged_in, "login", address, "-u", user, "--password-stdin"],
                   input=password, text=True, capture_output=True, check=True, timeout=CLI_TIMEOUT)
    remote = f"{address}/studio/small:1.0"
    engine.client.images.get(small_image).tag(f"{address}/studio/small", "1.0")
    subprocess.run(["docker", "--config", logged_in, "push", remote], capture_output=True, check=True, timeout=CLI_TIMEOUT)
    engine.client.images.remove(remote)
    manifest = (SMALL_REPO / "images" / "small" / "manifest.toml").read_text()
    repo = user_repo(tmp_path, {"small": f'image = "{remote}"\n{manifest}'})  # no Dockerfile: the image is pulled
    shutil.copytree(SMALL_REPO / "checks", repo / "checks")
    (repo / "pytest.ini").write_text("[pytest]\nrendergate_checks = checks\n")
    try:
        refused = run_in_user_repo(installed, repo, env={"DOCKER_CONFIG": str(nobody)}, timeout=SMALL_RUN_TIMEOUT)
        assert refused.returncode == 4 and "Traceback" not in refused.output
        assert f"small: cannot pull {remote}" in refused.output and f"docker login {address}" in refused.output
        pulled = run_in_user_repo(installed, repo, env={"DOCKER_CONFIG": str(logged_in)}, timeout=SMALL_RUN_TIMEOUT)
        assert pulled.returncode == 0, pulled.output
        assert f"pulling {remote}" in pulled.output
        assert pulled.verdicts["small"]["image"]["digest"] == engine.image_digest(small_image)
        assert pulled.verdicts["small"]["state"] == "passed", pulled.output
        assert pulled.outcome("test_tool_on_path", "small", "sh")["outcome"] == "passed"
        assert pulled.outcome("test_tool_on_path", "small", "sleep")["outcome"] == "passed"
        for written in [pulled.output, *(p.read_text(errors="replace") for p in pulled.reports.rglob("*") if p.is_file())]:
            assert password not in written
    finally:
        if engine.image_exists(remote):
            engine.client.images.remove(remote)


def test_the_modal_target_without_its_extra_is_one_line(installed, tmp_path):
    repo = user_repo(tmp_path, {"render": STUDIO_MANIFEST})
    (repo / "images" / "render" / "Dockerfile").write_text("FROM scratch\n")  # Modal builds Dockerfiles
    (repo / "images" / "render" / "manifest.toml").write_text(STUDIO_MANIFEST.replace(f'image = "{STUDIO_IMAGE}"\n', ""))
    run = run_in_user_repo(installed, repo, "--target=modal", "--gpu=T4",
                           env={"MODAL_TOKEN_ID": "ak-x", "MODAL_TOKEN_SECRET": "as-y"})
    assert run.returncode == 4 and "Traceback" not in run.output
    assert "--target modal needs Modal's client, an optional extra: pip install 'rendergate[modal]'" in run.output


def readme_commands() -> list[str]:
    """The commands of README's "Validate your own image" example, in order."""
    section = (ROOT / "README.md").read_text().split("## Validate your own image", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_the_readme_example_runs_as_written(installed, studio_image, engine, tmp_path):
    """Install (here: the wheel, already in the venv), init, validate, gate: as README says."""
    commands = readme_commands()
    assert commands[0].startswith("pip install rendergate")
    repo = tmp_path / "studio-repo"
    repo.mkdir()
    env = {"PATH": f"{installed / 'bin'}:/usr/local/bin:/usr/bin:/bin"}
    done = []
    for command in commands[1:]:
        command = command.replace("registry.example.com/studio/render:1.4", studio_image)
        done.append(bounded(command, SUITE_TIMEOUT, shell=True, cwd=repo, env={**env, "HOME": str(tmp_path)}))
    init, validate, gate = done
    assert init.returncode == 0, init.stdout + init.stderr
    manifest = repo / "images" / "render" / "manifest.toml"
    assert f'image = "{studio_image}"' in manifest.read_text()
    assert validate.returncode == 0, validate.stdout + validate.stderr
    verdict = json.loads((repo / "reports" / "verdicts" / "render.json").read_text())
    assert verdict["image"]["digest"] == engine.image_digest(studio_image) and verdict["complete"]
    assert (repo / "reports" / "report.html").is_file()
    # No GPU here: the GPU requirements were not validated, so the gate refuses, and says so.
    assert gate.returncode == 1 and gate.stderr.startswith("GATE REFUSED render") and "NOT VALIDATED" in gate.stderr
    assert "no NVIDIA GPU on the host it ran on: run it on a GPU host" in gate.stderr and "FAILED" not in gate.stderr
    assert engine.containers(verdict["run_id"]) == []
    shutil.rmtree(repo)
