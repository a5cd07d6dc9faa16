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


def test_shipped_manifests_load():
    variants = load_variants(ROOT / "images")
    assert {"manim", "blender", "xorg-glx", "host"} <= set(variants)
    assert variants["host"].dockerfile is None
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
