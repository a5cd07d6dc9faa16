"""`rendergate init --image REF`: run on each of our own images, the manifest it proposes holds
what their hand-written manifests declare; it is a valid manifest, names the image, and never
overwrites one without being told to."""
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import BASE_IMAGE, ROOT, SETUP_TIMEOUT, rendergate_cli
from rendergate.commands import init as inventory
from rendergate.core import requirements
from rendergate.core.manifest import load_variant


def init(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return rendergate_cli(f"--images-dir={tmp_path / 'images'}", "init", *args, reports=tmp_path / "reports")


@pytest.mark.parametrize("name", ["manim", "blender", "xorg-glx"])
def test_init_proposes_what_our_manifests_declare(name, good_images, tmp_path):
    done = init(tmp_path, f"--image={good_images[name]}", f"--name={name}")
    assert done.returncode == 0, done.stderr
    proposed = load_variant(tmp_path / "images" / name)
    declared = load_variant(ROOT / "images" / name)
    assert proposed.image == good_images[name]
    qualifiers = requirements.qualifiers()
    assert {k: v for k, v in declared.requirements.items() if k not in qualifiers}.items() <= proposed.requirements.items()
    assert set(declared.workloads) <= set(proposed.workloads)
    assert set(declared.settings.driver_capabilities) <= set(proposed.settings.driver_capabilities)
    assert "# " in (tmp_path / "images" / name / "manifest.toml").read_text()  # each line says what it was found from


def test_init_on_an_image_with_nothing_to_check_says_so(engine, tmp_path):
    """The plain base: no ffmpeg, no Python, no X: nothing proposed, and the manifest says why."""
    subprocess.run([ROOT / "scripts" / "make-base-image", BASE_IMAGE], check=True, capture_output=True, timeout=SETUP_TIMEOUT)
    done = init(tmp_path, f"--image={BASE_IMAGE}", "--name=plain")
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "images" / "plain" / "manifest.toml").read_text()
    assert "# nothing rendergate checks was found in the image" in text
    assert load_variant(tmp_path / "images" / "plain").requirements == {}


def test_init_never_overwrites_a_manifest(good_images, tmp_path):
    (tmp_path / "images" / "xorg-glx").mkdir(parents=True)
    (tmp_path / "images" / "xorg-glx" / "manifest.toml").write_text("# mine\n")
    done = init(tmp_path, f"--image={good_images['xorg-glx']}")
    assert done.returncode == 2 and "already exists (pass --force to replace it)" in done.stderr
    assert (tmp_path / "images" / "xorg-glx" / "manifest.toml").read_text() == "# mine\n"
    assert init(tmp_path, f"--image={good_images['xorg-glx']}", "--force").returncode == 0


def test_init_on_an_image_that_is_nowhere_is_one_line(tmp_path):
    done = init(tmp_path, "--image=127.0.0.1:9/nowhere/image:1")
    assert done.returncode == 2 and done.stderr.startswith("rendergate: cannot pull 127.0.0.1:9/nowhere/image:1")
    assert "Traceback" not in done.stderr and not (tmp_path / "images").exists()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tools=st.dictionaries(st.sampled_from(inventory.TOOLS), st.sampled_from(["/usr/bin/x", "/opt/x/bin/x"])),
       nvenc=st.lists(st.sampled_from(["h264_nvenc", "hevc_nvenc", "av1_nvenc"]), unique=True),
       modules=st.fixed_dictionaries({"manim": st.sampled_from([None, "0.22.0", {"error": "ImportError: x"}]),
                                      "manimpango": st.sampled_from([None, "0.7.1"]),
                                      "bpy": st.sampled_from([None, "4.2.0", "5.0.1"]),
                                      "cycles_backends": st.lists(st.sampled_from(["CUDA", "OPTIX", "HIP"]), unique=True),
                                      "version": st.just("3.11.2")}),
       env=st.dictionaries(st.sampled_from(["NVIDIA_DRIVER_CAPABILITIES", "PATH"]), st.just("x")),
       standalone=st.sampled_from(["", "/usr/share/texlive/standalone.cls"]))
def test_whatever_an_image_holds_the_proposal_is_a_valid_manifest(tmp_path, tools, nvenc, modules, env, standalone):
    found = inventory.Inventory("studio/render:1.0", env, tools, "ffmpeg version 5.1" if "ffmpeg" in tools else "",
                                nvenc if "ffmpeg" in tools else [], "/opt/venv/bin/python3", modules, standalone)
    folder = tmp_path / "proposed"
    folder.mkdir(exist_ok=True)
    (folder / "manifest.toml").write_text(inventory.propose(found, "proposed"))
    assert load_variant(folder).image == "studio/render:1.0"
