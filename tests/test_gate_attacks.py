"""Ways through the gate, each tried as a user (or an attacker) would, and each refused in one line.

Trimmed runs are real runs of the suites (-k, --deselect, node ids, a module that fails to import)
on images that pass here untrimmed: the gate re-derives every check the manifest implies and
names the ones that did not run. The rest hand the gate, promotion, merge and verify files they
must not trust: a "not supported by this GPU" where it does not hold, an image-less variant,
impossible or future times, duplicate keys, deep nesting, FIFOs and symlinks, a signing key that
is empty or not UTF-8, escape sequences in a check's message, and more failures than a summary holds.
"""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import CLI_TIMEOUT, ROOT, SMALL_REPO, SMALL_RUN_TIMEOUT, bounded, rendergate_cli, run_suite, written_verdict
from rendergate.core import judging, outcomes, verdict
from rendergate.core.environment import suite_version
from rendergate.core.manifest import load_variant
from rendergate.release import attestation

GATE_VARIANTS = ROOT / "tests" / "gate_variants"
SMALL = (f"--images-dir={SMALL_REPO / 'images'}", f"--checks={SMALL_REPO / 'checks'}")
DESK = (f"--images-dir={GATE_VARIANTS}", "--variant=desk", "-n", "0")
XORG_CHECK = "suites/test_xorg_glx.py::test_vnc_serves_display[desk@rendergate/desk:dev]"


def _gate(reports: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return rendergate_cli(*args, reports=reports, env=env)


@pytest.mark.parametrize("run_args, gate_args, words", [
    (("-k", "not glx_answers", *DESK), (f"--images-dir={GATE_VARIANTS}", "gate", "desk"),
     "1 check of xorg: test_glx_answers did not run (deselected with -k 'not glx_answers')"),
    (("--deselect", XORG_CHECK, *DESK), (f"--images-dir={GATE_VARIANTS}", "gate", "desk"),
     f"1 check of vnc: test_vnc_serves_display did not run (deselected with --deselect {XORG_CHECK})"),
    (("-k", "not sleep", *SMALL), (*SMALL, "gate", "small"),
     "1 check of tools: test_tool_on_path[sleep] did not run (deselected with -k 'not sleep')"),
    (("-m", "needs_gpu", *DESK), (f"--images-dir={GATE_VARIANTS}", "gate", "desk"),
     "test_glx_answers, test_xorg_starts did not run (deselected with -m 'needs_gpu')"),
])
def test_a_trimmed_run_leaves_the_gate_refusing_and_naming_what_did_not_run(tmp_path, good_images, small_image, run_args,
                                                                           gate_args, words):
    run = run_suite(tmp_path, *run_args, timeout=SMALL_RUN_TIMEOUT)
    assert run.complete, run.output
    assert words in run.output  # the run's own closing block says so too
    done = _gate(tmp_path / "reports", *gate_args)
    assert done.returncode == 1, done.stdout + done.stderr
    first, *rest = done.stderr.splitlines()
    assert first.startswith("GATE REFUSED") and "NOT VALIDATED" in first
    assert any(words in line and line.endswith("run every check: no -k, -m, --deselect, --lf or node ids") for line in rest), done.stderr


def test_the_same_runs_untrimmed_pass(tmp_path, good_images, small_image):
    desk = run_suite(tmp_path / "desk", *DESK, timeout=SMALL_RUN_TIMEOUT)
    small = run_suite(tmp_path / "small", *SMALL, timeout=SMALL_RUN_TIMEOUT)
    for reports, args in ((desk.reports, (f"--images-dir={GATE_VARIANTS}", "gate", "desk")),
                          (small.reports, (*SMALL, "gate", "small"))):
        done = _gate(reports, *args)
        assert done.returncode == 0 and done.stdout.startswith("GATE PASSED"), done.stdout + done.stderr


SHAPED = (f"--checks={SMALL_REPO / 'checks'}", f"--checks={SMALL_REPO / 'shaped_checks'}")


@pytest.fixture
def shaped_images(tmp_path) -> Path:
    """The small variant, declaring the requirement of tests/small_repo/shaped_checks too."""
    images = tmp_path / "images"
    shutil.copytree(SMALL_REPO / "images", images)
    manifest = images / "small" / "manifest.toml"
    manifest.write_text(manifest.read_text().replace("[requirements]\n", '[requirements]\nshapes = ["a", "b"]\n'))
    return images


@pytest.mark.parametrize("trim, check", [
    (None, None),
    ("not gen_two", "test_generated"),  # parametrize with a generator
    ("not kw_two", "test_keyword"),  # parametrize(argnames=, argvalues=)
    ("not fix_two", "test_fixture_params"),  # a fixture's params
    ("not hook_two", "test_hooked"),  # the module's own pytest_generate_tests
    ("not TestChild", "test_inherited"),  # an inherited test
    ("not TestNested", "test_nested"),  # a nested class
    ("not through_a_fixture", "test_through_a_fixture"),  # `requirement` through a fixture: one run per item
])
def test_every_run_pytest_makes_of_a_check_is_expected(tmp_path, shaped_images, small_image, trim, check):
    """Checks of one's own in every shape pytest multiplies a test into runs: untrimmed, the gate
    passes; with one run left out, it names the check."""
    run_suite(tmp_path, f"--images-dir={shaped_images}", *SHAPED, *(["-k", trim] if trim else []), timeout=SMALL_RUN_TIMEOUT)
    done = _gate(tmp_path / "reports", f"--images-dir={shaped_images}", *SHAPED, "gate", "small")
    if trim is None:
        assert done.returncode == 0 and done.stdout.startswith("GATE PASSED small"), done.stdout + done.stderr
        return
    assert done.returncode == 1 and f": {check}" in done.stderr and f"did not run (deselected with -k '{trim}')" in done.stderr, \
        done.stderr


@pytest.mark.parametrize("dry_run", ["--setup-only", "--setup-plan", "--collect-only"])
def test_a_run_that_calls_no_check_never_passes(tmp_path, small_image, dry_run):
    """--setup-only sets every check up and tears it down, calling none: nothing is proven."""
    run_suite(tmp_path, *SMALL, dry_run, timeout=SMALL_RUN_TIMEOUT)
    done = _gate(tmp_path / "reports", *SMALL, "gate", "small")
    assert done.returncode == 1 and f"did not run (the run called no check ({dry_run}))" in done.stderr, done.stderr


def test_a_module_of_checks_that_fails_to_collect_is_named(tmp_path, small_image):
    """A test module of the user's own, named on the command line, that cannot be imported: under
    xdist the run goes on without it, and the gate refuses naming the module and the error."""
    broken = tmp_path / "extra" / "test_mine.py"
    broken.parent.mkdir()
    broken.write_text("import a_module_that_is_not_installed\n\n\ndef test_mine(target):\n    pass\n")
    run = run_suite(tmp_path, *SMALL, str(broken), "-n", "2", timeout=SMALL_RUN_TIMEOUT)
    done = _gate(tmp_path / "reports", *SMALL, "gate", "small")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "test_mine.py: ModuleNotFoundError: No module named 'a_module_that_is_not_installed': its checks did not run" \
        in done.stderr, done.stderr + run.output


def test_a_check_module_that_fails_to_import_stops_the_run_and_the_gate_in_one_line(tmp_path, small_image):
    """In a folder of checks, a module that cannot be imported means the checks a manifest implies
    cannot be known: the run refuses to start and the gate refuses to judge (even a verdict of an
    earlier, passing run), each naming the module."""
    checks = tmp_path / "checks"
    shutil.copytree(SMALL_REPO / "checks", checks)
    earlier = run_suite(tmp_path, f"--images-dir={SMALL_REPO / 'images'}", f"--checks={checks}", timeout=SMALL_RUN_TIMEOUT)
    assert earlier.verdicts["small"]["state"] == "passed", earlier.output
    (checks / "test_more_tools.py").write_text("import a_module_that_is_not_installed\n")
    run = run_suite(tmp_path, f"--images-dir={SMALL_REPO / 'images'}", f"--checks={checks}", timeout=SMALL_RUN_TIMEOUT)
    assert run.returncode == 4 and "test_more_tools.py: the check module cannot be imported (ModuleNotFoundError" in run.output
    done = _gate(tmp_path / "reports", f"--images-dir={SMALL_REPO / 'images'}", f"--checks={checks}", "gate", "small")
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr
    assert "test_more_tools.py: the check module cannot be imported" in done.stderr


def _checks_with(tmp_path: Path, name: str, text: str, marked: bool = True) -> Path:
    """tests/small_repo's checks with one module more, at `name` (a subfolder's, say): of checks of
    `tools` (`marked`), or of plain tests."""
    checks = tmp_path / "checks"
    shutil.copytree(SMALL_REPO / "checks", checks)
    (checks / name).parent.mkdir(parents=True, exist_ok=True)
    mark = "pytestmark = pytest.mark.requires('tools')\n" if marked else ""
    (checks / name).write_text(f"import os\n\nimport pytest\n\n{mark}\n\n" + text)
    return checks


@pytest.mark.parametrize("module, run_args, words", [
    # A check whose worker dies: xdist's report carries no notes of the check's, yet it fails.
    ("test_crash.py", ("-n", "2"), "FAILED tools: test_dies: worker 'gw"),
    # The same check run by two workers (--dist each), failing on one, passing on the other: it failed.
    ("test_flaky.py", ("-n", "2", "--dist", "each"), "FAILED tools: test_once: "),
    # A subfolder's check that the run did not collect, with an -o override.
    ("deeper/test_deep.py", ("-o", "norecursedirs=deeper"), "1 check of tools: test_deep did not run (deselected with -o norecursedirs=deeper)"),
    # pytest.exit in a check, with return code 0: the run did not finish.
    ("test_exit.py", (), "the run stopped early: pytest.exit('bye')"),
])
def test_a_crash_a_second_run_a_hidden_module_or_pytest_exit_never_passes(tmp_path, small_image, module, run_args, words):
    text = {"test_crash.py": "def test_dies(target):\n    os._exit(3)\n",
            "test_flaky.py": f"def test_once(target):\n    marker = {str(tmp_path / 'ran')!r}\n"
                             "    if not os.path.exists(marker):\n        open(marker, 'w').close()\n        assert False, 'first'\n",
            "deeper/test_deep.py": "def test_deep(target):\n    assert True\n",
            "test_exit.py": "def test_exits(target):\n    pytest.exit('bye', returncode=0)\n"}[module]
    checks = _checks_with(tmp_path, module, text)
    run_suite(tmp_path, f"--images-dir={SMALL_REPO / 'images'}", f"--checks={checks}", *run_args, timeout=SMALL_RUN_TIMEOUT)
    done = _gate(tmp_path / "reports", f"--images-dir={SMALL_REPO / 'images'}", f"--checks={checks}", "gate", "small")
    assert done.returncode == 1 and words in done.stderr, done.stdout + done.stderr


def test_a_check_module_that_skips_itself_is_one_line_for_the_run_and_the_gate(tmp_path, small_image):
    checks = _checks_with(tmp_path, "test_skipping.py", "pytest.importorskip('a_module_that_is_not_installed')\n")
    args = (f"--images-dir={SMALL_REPO / 'images'}", f"--checks={checks}")
    run = run_suite(tmp_path, *args, timeout=SMALL_RUN_TIMEOUT)
    assert run.returncode == 4 and "test_skipping.py: the check module skips itself as it is imported" in run.output
    _one_line(_gate(tmp_path / "reports", *args, "gate", "small"), 2, "the check module skips itself as it is imported")


def test_a_verdict_of_other_checks_is_stale(tmp_path, small_image):
    """The run's checks never fail; the gate is given the real ones: the verdict is not about them."""
    loose = tmp_path / "loose"
    shutil.copytree(SMALL_REPO / "checks", loose)
    (loose / "test_tools.py").write_text((loose / "test_tools.py").read_text().replace("!= 0", "== 12345"))
    run_suite(tmp_path, f"--images-dir={SMALL_REPO / 'images'}", f"--checks={loose}", timeout=SMALL_RUN_TIMEOUT)
    done = _gate(tmp_path / "reports", *SMALL, "gate", "small")
    assert done.returncode == 1 and "stale: the run's folders of checks are not the ones given here" in done.stderr


def test_a_verdict_is_stale_when_a_conftest_above_the_checks_changed(tmp_path, small_image):
    """pytest loads the conftest.py above a folder of checks: its code is the checks' code too."""
    (tmp_path / "conftest.py").write_text("import pytest\n\n\n@pytest.fixture\ndef expected_rc():\n    return 0\n")
    checks = _checks_with(tmp_path, "test_rc.py", "def test_rc(target, expected_rc):\n    assert target.run('true').rc == expected_rc\n")
    args = (f"--images-dir={SMALL_REPO / 'images'}", f"--checks={checks}")
    run_suite(tmp_path, *args, timeout=SMALL_RUN_TIMEOUT)
    assert _gate(tmp_path / "reports", *args, "gate", "small").returncode == 0
    (tmp_path / "conftest.py").write_text((tmp_path / "conftest.py").read_text().replace("return 0", "return 7"))
    done = _gate(tmp_path / "reports", *args, "gate", "small")
    assert done.returncode == 1 and "stale: the run's folders of checks are not the ones given here" in done.stderr


@pytest.mark.parametrize("text, marked, words", [
    # A test of the folder of checks that takes no target: it fails, and so does the run's every verdict.
    ("def test_sanity():\n    assert False, 'broken helper'\n", False, "FAILED test_sanity: "),
    # A check of a requirement that takes no target would run about no variant: refused as it is collected.
    ("def test_no_target():\n    pass\n", True, "requires('tools') but takes no `target`"),
])
def test_a_test_of_the_checks_that_takes_no_target_is_never_ignored(tmp_path, small_image, text, marked, words):
    checks = _checks_with(tmp_path, "test_own.py", text, marked)
    args = (f"--images-dir={SMALL_REPO / 'images'}", f"--checks={checks}")
    run_suite(tmp_path, *args, "-n", "2", timeout=SMALL_RUN_TIMEOUT)
    done = _gate(tmp_path / "reports", *args, "gate", "small")
    assert done.returncode == 1 and words in done.stderr, done.stderr


def test_checks_in_a_symlinked_subfolder_are_expected_and_an_ini_that_hides_them_is_named(tmp_path, small_image):
    elsewhere = tmp_path / "elsewhere" / "sub"
    elsewhere.mkdir(parents=True)
    (elsewhere / "test_far.py").write_text("import pytest\n\npytestmark = pytest.mark.requires('tools')\n\n\n"
                                           "def test_far(target):\n    pass\n")
    checks = tmp_path / "checks"
    shutil.copytree(SMALL_REPO / "checks", checks)
    (checks / "sub").symlink_to(elsewhere)
    ini = tmp_path / "hiding.ini"
    ini.write_text("[pytest]\nnorecursedirs = sub\n")
    args = (f"--images-dir={SMALL_REPO / 'images'}", f"--checks={checks}")
    run_suite(tmp_path, *args, "-c", str(ini), f"--rootdir={ROOT}", timeout=SMALL_RUN_TIMEOUT)
    done = _gate(tmp_path / "reports", *args, "gate", "small")
    assert done.returncode == 1 and f"test_far did not run (not collected under {ini}'s norecursedirs=sub)" in done.stderr, \
        done.stderr


MANIM = load_variant(ROOT / "images" / "manim")
H100 = {"gpu_type": "NVIDIA H100 80GB HBM3",
        "gpus": "0: NVIDIA H100 80GB HBM3 [2330 at 00000000:01:00.0, hopper, cc 9.0, 80 GiB, MIG off, persistence on, GPU-1]"}
L4 = {"gpu_type": "NVIDIA L4", "gpus": "0: NVIDIA L4 [27b8 at 00000000:01:00.0, ada, cc 8.9, 22 GiB, MIG off, persistence on, GPU-2]"}
IMAGE = {"ref": "rendergate/manim:dev", "digest": "sha256:" + "a" * 64, "repo_digests": []}


def _problems(v: dict, variant=MANIM) -> list[str]:
    return judging.summary(judging.gate_problems(verdict.Verdict.from_json(v), variant, IMAGE["digest"], suite_version()))


@pytest.mark.parametrize("host, unsupported, must_have, words", [
    (H100, "nvenc", False, None),  # an H100 has no NVENC: a hardware limit, accepted
    (H100, "latex", False, "'latex' names no GPU feature a GPU may lack"),
    (H100, "nvenc", True, "the manifest must have nvenc on every host (requirements.gpu_must_have)"),
    (L4, "nvenc", False, "NVIDIA L4 has nvenc by the capability table"),
    ({"gpu_type": "no GPU", "gpus": "none (NVML lists no GPU)"}, "nvenc", False, "the verdict names no GPU that lacks nvenc"),
])
def test_not_supported_by_this_gpu_is_accepted_only_where_the_gpu_lacks_the_feature(tmp_path, host, unsupported,
                                                                                     must_have, words):
    variant = MANIM
    if must_have:
        shutil.copytree(ROOT / "images" / "manim", tmp_path / "manim")
        manifest = tmp_path / "manim" / "manifest.toml"
        manifest.write_text(manifest.read_text().replace("[requirements]\n", '[requirements]\ngpu_must_have = ["nvenc"]\n'))
        variant = load_variant(tmp_path / "manim")
    v = written_verdict(variant, host, image=IMAGE, outcomes={unsupported: "unsupported"})
    problems = _problems(v, variant)
    if words is None:
        assert problems == []
    else:
        assert any("not validated: " in p and words in p for p in problems), problems


def _verdict_file(tmp_path: Path, v: dict | str, name: str = "manim") -> Path:
    path = tmp_path / "verdicts" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(v if isinstance(v, str) else json.dumps(v))
    return path


def _one_line(done: subprocess.CompletedProcess, code: int, words: str) -> None:
    assert done.returncode == code and "Traceback" not in done.stderr, done.stdout + done.stderr
    assert len(done.stderr.splitlines()) == 1 and words in done.stderr, done.stderr


def test_a_variant_with_no_image_is_gated_only_with_one(tmp_path, small_image):
    images = tmp_path / "images"
    (images / "bare").mkdir(parents=True)
    shutil.copy(SMALL_REPO / "images" / "small" / "manifest.toml", images / "bare")
    _one_line(_gate(tmp_path, f"--images-dir={images}", f"--checks={SMALL_REPO / 'checks'}", "gate", "bare"), 2,
              "bare names no image")
    named = _gate(tmp_path, f"--images-dir={images}", f"--checks={SMALL_REPO / 'checks'}", "gate", "bare",
                  f"--image={small_image}")
    assert named.returncode == 2 and "no verdict" in named.stderr and "names no image" not in named.stderr


def _manim_verdict(good_images, engine, **changes) -> dict:
    image = {"ref": good_images["manim"], "digest": engine.image_digest(good_images["manim"]), "repo_digests": []}
    return {**written_verdict(MANIM, {"gpu_type": "no GPU"}, image=image), **changes}


PROMOTE = ("promote", "manim", "--to=rendergate-test/never:promoted")


@pytest.mark.parametrize("finished, words", [
    ("2026-12-05T09:00:00", "at .finished"),  # no zone
    ("2026-02-30T09:00:00+00:00", "at .finished: 2026-02-30T09:00:00+00:00: not a real time"),
    ("2026-12-05T25:00:00Z", "not a real time"),
    ("2026-12-05T09:00:00+99:00", "the offset +99:00 is beyond ±23:59"),
])
def test_an_impossible_or_zoneless_finish_time_is_one_line(tmp_path, good_images, engine, finished, words):
    _verdict_file(tmp_path, _manim_verdict(good_images, engine, finished=finished))
    for args in (("gate", "manim"), (*PROMOTE, f"--image={good_images['manim']}", f"--promoted={tmp_path / 'p'}")):
        _one_line(_gate(tmp_path, *args), 2, words)


@pytest.mark.parametrize("finished, words", [
    (None, "names no time it finished"),
    ("2099-01-01T00:00:00+00:00", "in the future"),
])
def test_a_verdict_with_no_finish_time_or_one_in_the_future_is_refused(tmp_path, good_images, engine, finished, words):
    _verdict_file(tmp_path, _manim_verdict(good_images, engine, finished=finished))
    for args in (("gate", "manim"), (*PROMOTE, f"--image={good_images['manim']}", f"--promoted={tmp_path / 'p'}")):
        done = _gate(tmp_path, *args)
        assert done.returncode == 1 and words in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not engine.image_exists("rendergate-test/never:promoted")


def test_duplicate_keys_are_refused(tmp_path, good_images, engine):
    text = json.dumps(_manim_verdict(good_images, engine, complete=False)).replace('"complete": false',
                                                                                  '"complete": false, "complete": true')
    path = _verdict_file(tmp_path, text)
    _one_line(_gate(tmp_path, "gate", "manim"), 2, f"{path}: not a readable verdict: the key 'complete' appears twice")


def test_a_deeply_nested_verdict_is_refused_and_never_signed(tmp_path, good_images, engine):
    private, _ = _key_pair(tmp_path)
    text = json.dumps(_manim_verdict(good_images, engine, options={"deep": "here"}))
    _verdict_file(tmp_path, text.replace('"here"', '{"a":' * 1000 + "1" + "}" * 1000))  # deeper than Python parses
    _one_line(_gate(tmp_path, "gate", "manim", f"--sign-key={private}"), 2, "nested")
    assert not (tmp_path / "attestations").exists()


def _key_pair(tmp_path):
    from test_attestation import key_pair
    return key_pair(tmp_path, "ed25519")


def _fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def test_fifos_are_refused_at_once_never_waited_on(tmp_path, good_images, engine):
    _verdict_file(tmp_path, _manim_verdict(good_images, engine))
    key = _fifo(tmp_path / "key.pem")
    started = time.monotonic()
    _one_line(_gate(tmp_path, "gate", "manim", f"--sign-key={key}"), 2, f"signing key {key}: not a regular file")
    _fifo(tmp_path / "attestations" / "manim.intoto.json")
    _, public = _key_pair(tmp_path)
    done = _gate(tmp_path, *PROMOTE, f"--image={good_images['manim']}", f"--promoted={tmp_path / 'p'}",
                 f"--trusted-key={public}", f"--sign-key={_key_pair(tmp_path)[0]}")
    _one_line(done, 2, "manim.intoto.json: not a readable attestation: not a regular file")
    (tmp_path / "verdicts" / "manim.json").unlink()
    _fifo(tmp_path / "verdicts" / "manim.json")
    _one_line(_gate(tmp_path, "gate", "manim"), 2, "not a verdict file: not a regular file")
    assert time.monotonic() - started < 3 * CLI_TIMEOUT / 2


def test_a_folder_where_a_file_goes_is_one_line(tmp_path, good_images, engine):
    (tmp_path / "verdicts" / "manim.json").mkdir(parents=True)
    _one_line(_gate(tmp_path, "gate", "manim"), 2, "not a verdict file: not a regular file")
    (tmp_path / "verdicts" / "manim.json").rmdir()
    _verdict_file(tmp_path, _manim_verdict(good_images, engine))
    (tmp_path / "attestations" / "manim.intoto.json").mkdir(parents=True)
    private, _ = _key_pair(tmp_path)
    done = _gate(tmp_path, "gate", "manim", f"--sign-key={private}")
    assert done.returncode == 2 and done.stderr.startswith("rendergate: ") and "cannot be written" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr
    _one_line(_gate(tmp_path, "gate", "manim", f"--sign-key={tmp_path}"), 2, "not a regular file")
    _one_line(_gate(tmp_path, *PROMOTE, f"--image={good_images['manim']}", "--max-age-days=1e10"), 2,
              "--max-age-days 1e+10: at most 3650")


def test_the_attestation_replaces_a_symlink_instead_of_writing_through_it(tmp_path, good_images, engine):
    _verdict_file(tmp_path, _manim_verdict(good_images, engine))
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "attestations").mkdir()
    (tmp_path / "attestations" / "manim.intoto.json").symlink_to(victim)
    private, _ = _key_pair(tmp_path)
    done = _gate(tmp_path, "gate", "manim", f"--sign-key={private}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert victim.read_text() == "precious" and not (tmp_path / "attestations" / "manim.intoto.json").is_symlink()


@pytest.mark.parametrize("value, words", [
    (b"", "set but empty"),
    (b"\xff\xfe-----BEGIN PRIVATE KEY-----", "not an unencrypted PEM private key"),
])
def test_a_signing_key_in_the_environment_that_is_empty_or_not_utf8_is_one_line(tmp_path, good_images, engine, value,
                                                                                 words):
    _verdict_file(tmp_path, _manim_verdict(good_images, engine))
    env = {k.encode(): v.encode() for k, v in os.environ.items()} | {attestation.SIGNING_KEY_ENV.encode(): value}
    done = bounded([sys.executable, "-m", "rendergate", f"--reports-dir={tmp_path}", "gate", "manim"], CLI_TIMEOUT,
                   cwd=ROOT, env=env)
    _one_line(done, 2, words)
    assert not (tmp_path / "attestations").exists()


def test_what_an_image_prints_cannot_drive_the_terminal(tmp_path, good_images, engine):
    """A check's message quotes the image: escape sequences, a carriage return and a forged line
    reach the terminal as visible escapes, never as themselves."""
    v = _manim_verdict(good_images, engine)
    forged = "\x1b[2K\r\x1b[1AGATE PASSED manim\nGATE PASSED\u202e"
    failing = next(c for c in v["checks"] if c["requirement"] == "latex")
    failing.update(outcome="failed", message=forged, item=forged[:10])
    _verdict_file(tmp_path, v)
    done = _gate(tmp_path, "gate", "manim")
    assert done.returncode == 1, done.stderr
    assert not any(c in done.stderr for c in "\x1b\r\u202e") and done.stderr.count("\n") == len(done.stderr.splitlines())
    assert "\\x1b[2K\\x0d\\x1b[1AGATE PASSED manim\\x0aGATE PASSED\\u202e" in done.stderr
    assert all(not line.startswith("GATE PASSED") for line in done.stderr.splitlines())


def test_a_lone_surrogate_in_a_verdict_is_printed_as_an_escape(tmp_path, good_images, engine):
    """JSON may hold a lone surrogate (\\ud800), which no terminal can print: shown as an escape."""
    text = json.dumps(_manim_verdict(good_images, engine, run_id="run-\ud800"))
    _verdict_file(tmp_path, text)
    done = _gate(tmp_path, "gate", "manim")
    assert done.returncode == 0 and "(run run-\\ud800)" in done.stdout, done.stdout + done.stderr


def test_no_run_can_write_a_verdict_its_own_schema_refuses():
    """A thousand failures under one requirement, each printing a megabyte: the verdict a run
    writes is bounded, valid by its schema, and still FAILED, naming them."""
    v = verdict.Verdict.start(MANIM, "run-1", "docker", {"suite_version": suite_version(), "gpu_type": "no GPU"}, {})
    for i in range(1000):
        entry = v.check(f"suites/test_latex.py::test_mathtex_renders[{i}]", "test_mathtex_renders", "latex", f"item-{i}")
        entry.outcome, entry.message = outcomes.Outcome.FAILED, f"{i}: " + "x" * 2**20
    written = v.as_json()
    assert verdict.checked(json.loads(json.dumps(written)), "here") and written["state"] == "failed"
    assert written["summary"][0].startswith("FAILED latex: test_mathtex_renders[item-0]: 0: xxx")


def test_merge_judges_each_verdict_again(tmp_path, good_images, engine):
    """A FAILED verdict relabelled passed is FAILED in merged.json as in merged.html."""
    v = _manim_verdict(good_images, engine)
    next(c for c in v["checks"] if c["requirement"] == "latex").update(outcome="failed", message="broke [command-failed]")
    v = verdict.Verdict.from_json(v).as_json()
    v.update(state="passed", problems=[], summary=[])
    path = _verdict_file(tmp_path, v)
    done = _gate(tmp_path, "merge", str(path), f"--out={tmp_path / 'merged.html'}")
    assert done.returncode == 0, done.stderr
    merged = json.loads((tmp_path / "merged.json").read_text())
    assert merged["verdicts"][0]["state"] == "failed" and merged["verdicts"][0]["summary"]


def test_the_verdict_signed_is_the_verdict_judged(tmp_path, good_images, engine, monkeypatch, capsys):
    """The gate reads the verdict once: a verdict replaced after it was judged is not what is signed."""
    from rendergate import __main__
    from rendergate.release import promotion

    good = _manim_verdict(good_images, engine)
    path = _verdict_file(tmp_path, good)
    failed = json.loads(json.dumps(good))
    next(c for c in failed["checks"] if c["requirement"] == "latex").update(outcome="failed", message="broke")
    read = verdict.load

    def read_then_replace(p):
        data = read(p)
        path.write_text(json.dumps(verdict.Verdict.from_json(failed).as_json()))  # replaced the moment it was read
        return data

    monkeypatch.setattr(promotion.verdicts, "load", read_then_replace)
    private, public = _key_pair(tmp_path)
    assert __main__.main([f"--reports-dir={tmp_path}", "gate", "manim", f"--sign-key={private}"]) == 0
    envelope = attestation.read(tmp_path / "attestations" / "manim.intoto.json")
    statement = attestation.verify(envelope, attestation.public_key(public), good["image"]["digest"], "here")
    assert judging.judge(verdict.checked(statement["predicate"], "signed")) == [] and statement["predicate"]["checks"] == good["checks"]
