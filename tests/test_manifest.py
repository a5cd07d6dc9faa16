"""Bad manifests are refused before any container starts, naming the file and the key."""
import os
from pathlib import Path

import pytest

from conftest import at_most, rendergate_cli
from rendergate.core.manifest import ManifestError, load_variant, load_variants

ROOT = Path(__file__).resolve().parents[1]

BAD = {
    "not TOML": ('[requirements\ngpu = true\n',
        "not valid TOML"),
    "unknown top-level key": ('gpus = true\n',
        "unknown key 'gpus'"),
    "unknown requirement": ('[requirements]\nnvenc_encoders = ["h264_nvenc"]\n',
        "unknown key 'requirements.nvenc_encoders'"),
    "wrong type": ('[requirements]\nnvenc = "h264_nvenc"\n',
        "key 'requirements.nvenc' must be a list"),
    "bad device type": ('[requirements]\ncycles_devices = ["OPTICS"]\n',
        "must be a list of Cycles device types"),
    "bad capability": ('[run]\ndriver_capabilities = ["vidoe"]\n',
        "key 'run.driver_capabilities' must be a list such as"),
    "section not a table": ('requirements = 3\n',
        "key 'requirements' must be a table"),
    "bool is not a number": ('[thresholds]\nrepeats = true\n',
        "key 'thresholds.repeats' must be a whole number of repeats"),
    "regression as a percentage": ('[thresholds]\nmax_regression = 25\n',
        "key 'thresholds.max_regression' must be the fraction"),
    "image with a space": ('image = "studio/render 1.0"\n',
        "key 'image' must be the image to check"),
    "host and image": ('host = true\nimage = "studio/render:1.0"\n',
        "key 'host' says the variant is this machine itself"),
    # issue 12's examples, each seen to crash, hang or pass silently before
    "a Latin-1 comment": ('# r\xe9glages\n[requirements]\ngpu = true\n'.encode("latin-1"),
        "not UTF-8 text (byte 0xe9 at offset 3)"),
    "a UTF-16 file": ('[requirements]\ngpu = true\n'.encode("utf-16"),
        "not UTF-8 text"),
    "nested too deeply": ("x = " + "[" * 5000 + "]" * 5000 + "\n",
        "nested too deeply"),
    "a non-ASCII digit in a size": ('[workloads]\nencode = { size = "\uff13\uff12\uff10x180", frames = 2 }\n',
        "key 'workloads.encode' must be"),
    "an infinite threshold": ('[thresholds]\nparallel_speedup = inf\n',
        "key 'thresholds.parallel_speedup' must be a speedup"),
    "a threshold of 1e308": ('[thresholds]\nparallel_speedup = 1e308\n',
        "at most 1000"),
    "repeats = 1e9": ('[thresholds]\nrepeats = 1e9\n',
        "key 'thresholds.repeats' must be a whole number of repeats, 1 to 100"),
    "a billion repeats": ('[thresholds]\nrepeats = 1000000000\n',
        "1 to 100"),
    "cpus = 1e-12": ('[run]\ncpus = 1e-12\n',
        "key 'run.cpus' must be how many CPUs the container may use, 0.01 to 1024"),
    "shm_size = banana": ('[run]\nshm_size = "banana"\n',
        "key 'run.shm_size' must be a size such as \"1g\""),
    "NUL in a command": ('[run]\ncommand = ["sleep", "inf\\u0000inity"]\n',
        "key 'run.command' must be a command"),
    "a newline in a command": ('[run]\ncommand = ["sleep\\ninfinity"]\n',
        "key 'run.command' must be a command"),
    "an env key with =": ('[run]\nenv = { "A=B" = "c" }\n',
        "key 'run.env' must be a table of NAME"),
    "an env value never shown": ('[run]\nenv = { TOKEN = "s3cret\\nx" }\n',
        "(not shown: it may be a secret)"),
    "a workload missing a key": ('[workloads]\ncycles_frame = { size = "320x180" }\n',
        "key 'workloads.cycles_frame' must be"),
    "manim_parts without the scene": ('[workloads]\nmanim_parts = true\n[thresholds]\nmanim_parts_speedup = 0.8\n',
        "key 'workloads.manim_scene' is missing: workloads.manim_parts needs it"),
    "a workload without its threshold": ('[workloads]\nparallel_frames = { frames = 4, workers = 2, size = "64x64", samples = 1 }\n',
        "key 'thresholds.parallel_speedup' is missing"),
    "one tier of two": ('[workloads]\nmanim_scene = { smoke = "480p15" }\n',
        "a table naming the quality of both tiers"),
    "an odd size": ('[workloads]\nencode = { size = "641x360", frames = 2 }\n',
        "even"),
    "a newline in an encoder name": ('[requirements]\nnvenc = ["h264_nvenc\\n"]\n',
        "key 'requirements.nvenc' must be"),
    "duplicate encoders": ('[requirements]\nnvenc = ["h264_nvenc", "h264_nvenc"]\n',
        "key 'requirements.nvenc' must be"),
    "100,000 encoders": ("[requirements]\nnvenc = [" + ", ".join(['"h264_nvenc"'] * 100000) + "]\n",
        "bytes, more than a manifest may have"),
    "65 encoders": ("[requirements]\nnvenc = [" + ", ".join(f'"e{i}"' for i in range(65)) + "]\n",
        "key 'requirements.nvenc' must be a list"),
    "a GPU count of 0": ('[run]\ngpus = 0\n',
        "key 'run.gpus' must be"),
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
    (tmp_path / "v" / "manifest.toml").write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ManifestError) as e:
        load_variant(tmp_path / "v")
    assert str(tmp_path / "v" / "manifest.toml") in str(e.value)
    assert expected in str(e.value)


def _fifo(path):
    os.mkfifo(path)


def _loop(path):
    path.symlink_to(path.parent / "manifest.toml")


# What the manifest itself is: (made as, the words of the error).
NOT_A_MANIFEST_FILE = {
    "a folder": (lambda p: p.mkdir(), "not a regular file (a folder, a pipe or a device)"),
    "a pipe (reading it would hang)": (_fifo, "not a regular file (a folder, a pipe or a device)"),
    "a symlink loop": (_loop, "cannot be read (Too many levels of symbolic links)"),
}


@pytest.mark.parametrize("case", NOT_A_MANIFEST_FILE)
def test_a_manifest_that_is_not_a_file_is_refused_without_hanging(tmp_path, case):
    make, expected = NOT_A_MANIFEST_FILE[case]
    (tmp_path / "v").mkdir()
    make(tmp_path / "v" / "manifest.toml")
    with pytest.raises(ManifestError) as e, at_most(10):
        load_variant(tmp_path / "v")
    assert str(tmp_path / "v" / "manifest.toml") in str(e.value) and expected in str(e.value)


@pytest.mark.parametrize("folder, dockerfile, expected", [
    ("bad\nname", None, "a variant's folder name is 1 to 64 letters"),
    ("v", "", "Dockerfile: no FROM instruction"),
    ("v", "RUN true\n", "Dockerfile: no FROM instruction"),
    ("v", b"FROM x\n# \xff\n", "Dockerfile: cannot be read as UTF-8 text"),
])
def test_a_variant_folder_that_cannot_be_built_is_refused(tmp_path, folder, dockerfile, expected):
    (tmp_path / folder).mkdir()
    (tmp_path / folder / "manifest.toml").write_text("[requirements]\ngpu = true\n")
    if dockerfile is not None:
        (tmp_path / folder / "Dockerfile").write_bytes(dockerfile if isinstance(dockerfile, bytes) else dockerfile.encode())
    with pytest.raises(ManifestError) as e:
        load_variant(tmp_path / folder)
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


def test_an_empty_images_folder_is_one_line(tmp_path, suite):
    (tmp_path / "images").mkdir()
    run = suite(f"--images-dir={tmp_path / 'images'}")
    assert run.returncode == 4 and f"{tmp_path / 'images'}: no variants" in run.output and "Traceback" not in run.output


def test_the_readme_table_of_requirements_is_the_registry():
    """The docs table is what the code declares, never a copy kept by hand."""
    done = rendergate_cli("requirements")
    assert done.returncode == 0, done.stderr
    table = (ROOT / "README.md").read_text().split("<!-- rendergate requirements -->\n")[1]
    assert table.split("<!-- end of rendergate requirements -->")[0] == done.stdout, \
        "README's table of requirements is not the registry's: paste `python -m rendergate requirements` between its markers"
    keys = {line.split("`")[1] for line in done.stdout.splitlines()[2:]}
    assert {"requirements.nvenc", "requirements.gpu_must_have", "workloads.encode"} <= keys


DECLARE = "from rendergate.core.requirements import declare\nfrom rendergate.core.schema import boolean\n"
UNDECLARED = 'import pytest\n\n\n@pytest.mark.requires("latexx")\ndef test_mine(target):\n    pass\n'


def check_module(tmp_path: Path, source: str) -> Path:
    """A folder of checks holding one module, test_mine.py."""
    (tmp_path / "checks").mkdir()
    (tmp_path / "checks" / "test_mine.py").write_text(source)
    return tmp_path / "checks"


@pytest.mark.parametrize("module, expected", [
    ("import no_such_module\n", "the check module cannot be imported (ModuleNotFoundError: No module named 'no_such_module')"),
    (DECLARE + 'LATEX = declare("latex", boolean, "true or false", "mine")\n', "requirement 'latex' is declared already, in "),
    (DECLARE + 'X = declare("My Key", boolean, "true or false", "x")\n', "requirement 'My Key': a key is lower-case letters"),
    (UNDECLARED, "requires('latexx'): no such requirement is declared"),
])
def test_a_bad_check_module_is_one_line_naming_it(tmp_path, suite, monkeypatch, module, expected):
    """From the suites' plugin and from the command alike, before any manifest is read or image
    built: with no engine reachable, a run that touched it would say so first."""
    checks = check_module(tmp_path, module)
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    run = suite(f"--checks={checks}")
    assert run.returncode == 4 and "bad check module:" in run.output and expected in run.output, run.output
    assert str(checks / "test_mine.py") in run.output and "Traceback" not in run.output and "Docker engine" not in run.output
    assert run.verdicts == {} and run.leftover == []
    done = rendergate_cli(f"--checks={checks}", "requirements")
    assert done.returncode == 2 and expected in done.stderr and "Traceback" not in done.stderr


def test_a_test_outside_the_folders_of_checks_requiring_an_undeclared_key_is_one_line(tmp_path, suite):
    """Collected, not imported beforehand: said as it is collected, without pytest's own frames."""
    checks = check_module(tmp_path, UNDECLARED)
    run = suite(str(checks / "test_mine.py"), "--collect-only")
    assert run.returncode == 2 and "requires('latexx'): no such requirement is declared" in run.output, run.output
    assert "_pytest" not in run.output and "pluggy" not in run.output
