"""Bad manifests are refused before any container starts, naming the file and the key."""
from pathlib import Path

import pytest

from rendergate.manifest import ManifestError, load_variant, load_variants

ROOT = Path(__file__).resolve().parents[1]

BAD = {
    "not TOML": ('[requirements\ngpu = true\n', "not valid TOML"),
    "unknown top-level key": ('gpus = true\n', "unknown key 'gpus'"),
    "unknown requirement": ('[requirements]\nnvenc_encoders = ["h264_nvenc"]\n', "unknown key 'requirements.nvenc_encoders'"),
    "wrong type": ('[requirements]\nnvenc = "h264_nvenc"\n', "key 'requirements.nvenc' must be a list"),
    "bad device type": ('[requirements]\ncycles_devices = ["OPTICS"]\n', "unknown device type 'OPTICS'"),
    "bad capability": ('[run]\ndriver_capabilities = ["vidoe"]\n', "unknown capability 'vidoe'"),
    "section not a table": ('requirements = 3\n', "key 'requirements' must be a table"),
    "bool is not a number": ('[thresholds]\nrepeats = true\n', "key 'thresholds.repeats' must be a positive integer"),
    "regression as a percentage": ('[thresholds]\nmax_regression = 25\n', "key 'thresholds.max_regression' must be the fraction"),
    "image with a space": ('image = "studio/render 1.0"\n', "key 'image' must be the image to check"),
    "host and image": ('host = true\nimage = "studio/render:1.0"\n', "key 'host' says the variant is this machine itself"),
}
# What sits beside the manifest: (the Dockerfile made as, the manifest, the words of the error).
BESIDE = {
    "Dockerfile a folder": ("folder", "", "Dockerfile: not a file (a folder or a dangling link)"),
    "Dockerfile a dangling link": ("dangling", "", "Dockerfile: not a file (a folder or a dangling link)"),
    "host with a Dockerfile": ("file", "host = true\n", "but it has a Dockerfile beside it"),
    "image with a Dockerfile": ("file", 'image = "studio/render:1.0"\n', "key 'image' names studio/render:1.0, "
                                                                          "but a Dockerfile is beside it"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_manifest_names_file_and_key(tmp_path, case):
    text, expected = BAD[case]
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "manifest.toml").write_text(text)
    with pytest.raises(ManifestError) as e:
        load_variant(tmp_path / "v")
    assert str(tmp_path / "v" / "manifest.toml") in str(e.value)
    assert expected in str(e.value)


@pytest.mark.parametrize("case", BESIDE)
def test_what_is_beside_the_manifest_must_agree_with_it(tmp_path, case):
    dockerfile, text, expected = BESIDE[case]
    folder = tmp_path / "v"
    folder.mkdir()
    (folder / "manifest.toml").write_text(text)
    {"folder": lambda p: p.mkdir(), "dangling": lambda p: p.symlink_to(tmp_path / "nowhere"),
     "file": lambda p: p.write_text("FROM scratch\n")}[dockerfile](folder / "Dockerfile")
    with pytest.raises(ManifestError) as e:
        load_variant(folder)
    assert str(folder) in str(e.value) and expected in str(e.value)


def test_shipped_manifests_load():
    variants = load_variants(ROOT / "images")
    assert {"manim", "blender", "xorg-glx", "host"} <= set(variants)
    assert variants["host"].dockerfile is None and variants["host"].host
    assert variants["manim"].image_ref == "rendergate/manim:dev"
    assert variants["manim"].requirements["nvenc"] == ["h264_nvenc", "hevc_nvenc"]


def test_suite_refuses_a_bad_manifest_before_any_container(tmp_path, suite, monkeypatch):
    # With no engine reachable, a run that touched the engine would fail on that first: the
    # manifest error coming out proves it was reported before any container could start.
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    (tmp_path / "images" / "broken").mkdir(parents=True)
    (tmp_path / "images" / "broken" / "manifest.toml").write_text('[requirements]\nlatex = "yes"\n')
    run = suite(f"--images-dir={tmp_path / 'images'}")
    assert run.returncode == 4  # pytest's usage error
    assert "bad manifest:" in run.output and "key 'requirements.latex' must be true or false" in run.output
    assert "Docker engine" not in run.output and "Traceback" not in run.output


@pytest.mark.parametrize("manifest, args, expected", [
    ("[requirements]\nlatex = true\n", [], "no image to check: no Dockerfile beside it, no `image = \"REF\"` in it "
                                             "and no --image; a manifest of the machine running the suite itself says `host = true`"),
    ("host = true\n[requirements]\ngpu = true\n", ["--variant=mine", "--image=studio/render:1.0"],
     "--image: mine is this machine itself (host = true in"),
])
def test_a_manifest_that_names_nothing_to_check_is_refused_before_anything_starts(tmp_path, suite, monkeypatch,
                                                                                  manifest, args, expected):
    """Never the host in an image's stead: a manifest without a Dockerfile, an image or `host =
    true` is an error naming the file, before the engine is even asked (none answers here)."""
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    (tmp_path / "images" / "mine").mkdir(parents=True)
    (tmp_path / "images" / "mine" / "manifest.toml").write_text(manifest)
    run = suite(f"--images-dir={tmp_path / 'images'}", *args)
    assert run.returncode == 4
    assert expected in run.output and "Docker engine" not in run.output and "Traceback" not in run.output
    if not args:
        assert str(tmp_path / "images" / "mine" / "manifest.toml") in run.output
