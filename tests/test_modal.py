"""The modal target, offline (no network to Modal here): the translation from a manifest to
Modal's real image and sandbox argument objects, the GPU matrix's parametrization, and the
credential errors of a real Modal client. The live path (sandboxes on Modal's GPUs) needs Modal
credentials: README, "A GPU matrix on Modal"; it is not faked here."""
import inspect
import os
import shutil
import sys
from dataclasses import replace

import modal
import pytest

from conftest import CLI_TIMEOUT, ROOT, bounded, make, written_verdict
from rendergate.core import verdict
from rendergate.core.manifest import load_variant, load_variants
from rendergate.engines.modal import build_digest, image, plan
from rendergate.release.promotion import Refused, gate_matrix

FAKE_TOKENS = {"MODAL_TOKEN_ID": "ak-Zx81Qm2Lp4Rt6Vb9Nc3Kd", "MODAL_TOKEN_SECRET": "as-Hq5Wm8Tn2Lp7Xc4Vb1Zr"}


def pytest_suites(*args, env=None, home=None):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_")}
    environment.update(env or {})
    if home:
        environment["HOME"] = str(home)
    return bounded([sys.executable, "-m", "pytest", "suites", "-q", *args], CLI_TIMEOUT, cwd=ROOT, env=environment)


@pytest.mark.parametrize("name", ["manim", "blender", "xorg-glx"])
def test_manifest_becomes_a_modal_image_and_sandbox_arguments(name):
    variant = load_variant(ROOT / "images" / name)
    p = plan(variant, "L4", "nvidia/cuda:12.4.1-runtime-ubuntu22.04", 1800, "run-1")
    built = image(p)
    assert isinstance(built, modal.Image) and repr(built) == f"Image.from_dockerfile({str(variant.dockerfile)!r})"
    assert p.context_dir == variant.folder and p.build_args == {"BASE_IMAGE": "nvidia/cuda:12.4.1-runtime-ubuntu22.04"}
    assert p.sandbox["gpu"] == "L4" and p.sandbox["timeout"] == 1800
    assert p.sandbox["env"]["NVIDIA_DRIVER_CAPABILITIES"] == ",".join(variant.run["driver_capabilities"])
    assert p.sandbox["tags"] == {"rendergate.run": "run-1", "rendergate.variant": name, "rendergate.gpu": "L4"}
    assert list(p.command) == variant.run["command"]
    # Modal's own Sandbox.create takes exactly these arguments.
    inspect.signature(modal.Sandbox.create).bind(*p.command, app=None, image=built, **p.sandbox)


def test_gpu_counts_and_cpus_reach_modal():
    variant = load_variant(ROOT / "images" / "blender")
    assert plan(replace(variant, run={**variant.run, "gpus": 2}), "H100", None, 60, "r").sandbox["gpu"] == "H100:2"
    assert plan(replace(variant, run={**variant.run, "gpus": "none"}), "H100", None, 60, "r").sandbox["gpu"] is None
    assert plan(replace(variant, run={**variant.run, "cpus": 2}), "T4", None, 60, "r").sandbox["cpu"] == 2.0
    assert plan(variant, "T4", None, 60, "r").build_args == {}


def test_gpu_matrix_parametrizes_every_image_variant_per_gpu_type():
    done = pytest_suites("--target=modal", "--gpu=T4,L4,H100", "--collect-only", "-k", "test_mathtex_renders",
                         env=FAKE_TOKENS)
    assert done.returncode == 0, done.stdout + done.stderr
    ids = {line.split("[", 1)[1].rstrip("]").split("]")[0] for line in done.stdout.splitlines() if "[" in line}
    variants = load_variants(ROOT / "images")
    expected = {f"{n}@modal-{g}" for n, v in variants.items() if v.needs_image for g in ("T4", "L4", "H100")}
    expected |= {f"{n}@local" for n, v in variants.items() if not v.needs_image}
    assert ids == expected
    for token in FAKE_TOKENS.values():
        assert token not in done.stdout + done.stderr


def test_without_credentials_a_real_client_fails_in_one_line(tmp_path):
    done = pytest_suites("--target=modal", "--gpu=T4", home=tmp_path)
    assert done.returncode == 4
    assert "no Modal credentials (Token missing): run `modal token new`" in done.stderr
    assert "MODAL_TOKEN_ID and MODAL_TOKEN_SECRET" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("args, line", [
    (["--target=modal"], "--target modal needs --gpu with Modal GPU types"),
    (["--target=modal", "--gpu=T4,Z9"], "not one: Z9"),
    (["--gpu=T4"], "--gpu is a GPU matrix on Modal: it needs --target modal"),
    (["--runtime=vm"], "--runtime vm is not available with --target docker"),
    (["--target=local"], "argument --target: invalid choice: 'local'"),  # only `host = true` runs on this machine
    (["--target=modal", "--gpu=T4:abc"], "not one: T4:abc"),
    (["--target=modal", "--gpu=T4:0"], "not one: T4:0"),
    (["--max-gpus=0"], "argument --max-gpus: invalid positive int value: '0'"),
    (["--sandbox-timeout=-5"], "argument --sandbox-timeout: invalid positive int value: '-5'"),
    (["--check-timeout=-1"], "argument --check-timeout: invalid positive float value: '-1'"),
    (["--check-timeout=nan"], "argument --check-timeout: invalid positive float value: 'nan'"),
])
def test_bad_matrix_options_are_one_line(args, line):
    done = pytest_suites(*args, env=FAKE_TOKENS)
    assert done.returncode == 4 and line in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("make", [lambda p: p.write_text("[default\ntoken_id = 'x'\n"), lambda p: p.mkdir()],
                         ids=["not TOML", "a folder"])
def test_a_broken_modal_config_is_one_line(make, tmp_path):
    make(tmp_path / ".modal.toml")
    done = pytest_suites("--target=modal", "--gpu=T4", home=tmp_path)
    assert done.returncode == 4 and "Traceback" not in done.stderr and "INTERNALERROR" not in done.stderr
    assert f"{tmp_path / '.modal.toml'}: Modal's config cannot be read" in done.stderr


def _cell_verdict(variant, gpu_type: str, failing: str | None = None, built: str | None = None) -> dict:
    """A matrix cell's verdict, about the image Modal built from the variant's folder as it is
    (or `built`); stand-in for a live Modal run (none here)."""
    image = {"ref": f"modal image im-test of {variant.dockerfile}", "digest": built or build_digest(variant)}
    return written_verdict(variant, {"gpu_type": gpu_type}, image=image, target="modal",
                           outcomes={failing: "failed"} if failing else None)


def test_the_matrix_gate_needs_every_cell(tmp_path):
    variant = load_variant(ROOT / "images" / "manim")
    for gpu_type, failing in (("T4", None), ("L4", "latex")):
        verdict.write(tmp_path / "verdicts" / f"manim@{gpu_type}.json", _cell_verdict(variant, gpu_type, failing))
    with pytest.raises(Refused) as refused:
        gate_matrix(tmp_path / "verdicts", variant, ["T4", "L4", "H100"])
    text = str(refused.value)
    assert text.startswith("GATE REFUSED manim on the GPU matrix T4,L4,H100: 2 of 3 cells did not pass")
    assert f"GATE REFUSED manim ({build_digest(variant)}) on L4" in text and "latex" in text
    assert "H100:" in text and "manim@H100.json: no verdict" in text and ") on T4" not in text
    passed = gate_matrix(tmp_path / "verdicts", variant, ["T4"])
    assert passed.startswith(f"GATE PASSED manim ({build_digest(variant)}) on T4")


def test_a_cell_is_bound_to_the_image_modal_built_from_the_variants_folder_as_it_is(tmp_path):
    """A cell's verdict about an image built from other files (the Dockerfile changed since), or
    about no image at all, does not pass the matrix gate."""
    images = tmp_path / "images"
    shutil.copytree(ROOT / "images" / "manim", images / "manim")
    variant = load_variant(images / "manim")
    verdict.write(tmp_path / "verdicts" / "manim@T4.json", _cell_verdict(variant, "T4"))
    assert gate_matrix(tmp_path / "verdicts", variant, ["T4"]).startswith("GATE PASSED manim")
    dockerfile = images / "manim" / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "RUN true\n")
    with pytest.raises(Refused, match="mismatched: the verdict is about image sha256:"):
        gate_matrix(tmp_path / "verdicts", variant, ["T4"])
    unbound = _cell_verdict(variant, "T4")
    unbound["image"] = None
    verdict.write(tmp_path / "verdicts" / "manim@T4.json", unbound)
    with pytest.raises(Refused, match="mismatched: the verdict is about image none"):
        gate_matrix(tmp_path / "verdicts", variant, ["T4"])


@pytest.mark.parametrize("option", ["--image=rendergate/manim:dev", "--sign-key=gate.pem"])
def test_the_matrix_gate_refuses_an_image_or_a_key_it_cannot_honour(option, tmp_path):
    done = bounded([sys.executable, "-m", "rendergate", f"--reports-dir={tmp_path}", "gate", "manim", "--gpu=T4", option],
                   CLI_TIMEOUT, cwd=ROOT)
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith(f"rendergate: {option.split('=')[0]} with --gpu: each cell of a Modal matrix ran the "
                                  "image Modal built")


def test_the_modal_target_takes_no_local_image():
    done = pytest_suites("--target=modal", "--gpu=T4", "--variant=manim", "--image=rendergate/manim:dev", env=FAKE_TOKENS)
    assert done.returncode == 4 and "--image is for a local engine" in done.stderr


def test_the_target_calls_modal_as_its_api_is():
    """The live path offline: the calls ModalTarget makes exist with these arguments in the
    installed modal (exec with text=, stdin written then closed, stdout/stderr read, wait)."""
    from modal.container_process import ContainerProcess
    from modal.io_streams import StreamReader, StreamWriter

    inspect.signature(modal.Sandbox.exec).bind(None, "/bin/sh", "-c", "true", text=False)
    assert {"write", "write_eof", "drain"} <= set(dir(StreamWriter)) and "read" in dir(StreamReader)
    assert {"stdin", "stdout", "stderr", "wait"} <= set(dir(ContainerProcess))
    assert {"terminate", "create"} <= set(dir(modal.Sandbox))
    inspect.signature(modal.Sandbox.from_id).bind("sb-123")  # how the run's other workers attach to it
    assert "object_id" in dir(modal.Sandbox)
    inspect.signature(modal.App.lookup).bind("rendergate", create_if_missing=True)


def test_make_gate_on_a_matrix_without_credentials_refuses_every_cell(tmp_path):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_")}
    done = make("gate", "VARIANT=manim", "GPUS=T4,L4", f"REPORTS_DIR={tmp_path}", timeout=CLI_TIMEOUT,
                env={**environment, "HOME": str(tmp_path)})
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no Modal credentials (Token missing)" in done.stderr
    assert "--base-image" not in done.stdout  # Modal builds FROM the Dockerfiles' CUDA base, not a local one
    assert "GATE REFUSED manim on the GPU matrix T4,L4: 2 of 2 cells did not pass" in done.stderr
