"""`make gate` and `make promote`, for real: real images, real runs of the suites, and a real
registry on loopback (Debian's docker-registry), never a mock.

The gate passes only a complete verdict in which every declared requirement passed; promotion
also needs that verdict to be about the very image, from the current manifest, and fresh."""
import base64
import json
import re
import shutil
import subprocess
import textwrap
import urllib.request
from pathlib import Path
from xml.etree import ElementTree

import pytest

from conftest import (
    CLI_TIMEOUT,
    ROOT,
    SMALL_REPO,
    SMALL_RUN_TIMEOUT,
    TIMED_SUITE_TIMEOUT,
    loopback_registry,
    make,
    once_per_run,
    rendergate_cli,
    run_suite,
    skip_when_host_busy,
    used_by_others,
    written_verdict,
)
from rendergate.core.manifest import load_variant

GATE_VARIANTS = ROOT / "tests" / "gate_variants"
# What the tests that push promote: the small variant and its own check.
SMALL = ("VARIANT=small", f"IMAGES_DIR={SMALL_REPO / 'images'}", f"CHECKS={SMALL_REPO / 'checks'}")
SMALL_IMAGE = "rendergate/small:dev"


def junit_properties(reports) -> dict[str, str]:
    """The test suite's properties in the run's JUnit XML."""
    suite = ElementTree.parse(reports / "junit.xml").getroot().find("testsuite")
    return {p.get("name"): p.get("value") for p in suite.find("properties")}


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    with loopback_registry(tmp_path_factory.mktemp("registry")) as address:
        yield address


def manifest_digest(address: str, repository: str, tag: str) -> str:
    request = urllib.request.Request(f"http://{address}/v2/{repository}/manifests/{tag}", method="HEAD",
                                     headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    return urllib.request.urlopen(request, timeout=10).headers["Docker-Content-Digest"]


def _gate_once(tmp_path_factory, name: str, *args: str) -> tuple[Path, subprocess.CompletedProcess]:
    """`make gate` with `args`, run once per test run and shared by the tests that ask for it."""
    def gate(reports):
        done = make("gate", *args, f"REPORTS_DIR={reports}")
        (reports / "make-gate.json").write_text(json.dumps([done.returncode, done.stdout, done.stderr]))
    reports = once_per_run(tmp_path_factory, name, gate)
    returncode, stdout, stderr = json.loads((reports / "make-gate.json").read_text())
    return reports, subprocess.CompletedProcess(f"make gate {' '.join(args)}", returncode, stdout, stderr)


@pytest.fixture(scope="module")
def passed_gate(good_images, tmp_path_factory):
    """`make gate` on the text-only variant (rendergate's own checks of the Manim image): it passes here."""
    return _gate_once(tmp_path_factory, "gate-reports", "VARIANT=text-only", f"IMAGES_DIR={GATE_VARIANTS}")


@pytest.fixture(scope="module")
def small_gate(base_image, tmp_path_factory):
    """`make gate` on the small variant (a few MB, a check of the tests' own): what the tests that
    push to a registry promote. It passes here."""
    return _gate_once(tmp_path_factory, "small-gate-reports", *SMALL)


def test_the_small_variants_own_check_fails_for_a_tool_it_lacks(base_image, tmp_path):
    """The check that the pushing tests rely on can fail: a tool the small image lacks is named,
    with its cause, while the ones it has pass."""
    images = tmp_path / "images"
    shutil.copytree(SMALL_REPO / "images", images)
    manifest = images / "small" / "manifest.toml"
    manifest.write_text(manifest.read_text().replace('tools = ["sh", "sleep"]', 'tools = ["sh", "ffmpeg"]'))
    run = run_suite(tmp_path, f"--images-dir={images}", f"--checks={SMALL_REPO / 'checks'}", "--variant=small",
                    timeout=SMALL_RUN_TIMEOUT)
    missing = run.outcome("test_tool_on_path", "small", "ffmpeg")
    assert (missing["outcome"], missing["cause"]) == ("failed", "tool-missing"), run.output
    assert missing["message"].startswith("ffmpeg is not on the image's PATH")
    assert run.outcome("test_tool_on_path", "small", "sh")["outcome"] == "passed"


def test_gate_passes_a_complete_passing_run(passed_gate):
    reports, done = passed_gate
    assert done.returncode == 0, done.stdout + done.stderr
    assert "GATE PASSED text-only (sha256:" in done.stdout
    verdict = json.loads((reports / "verdicts" / "text-only.json").read_text())
    assert verdict["complete"] and verdict["state"] == "passed"
    assert {name: r["outcome"] for name, r in verdict["requirements"].items()} == {"manimpango": "passed", "latex": "passed"}
    assert (reports / "report.html").is_file()
    assert junit_properties(reports)["rendergate.verdict.text-only"] == "PASSED"


def test_promotion_pushes_to_a_registry_and_keeps_the_verdict(small_gate, registry, engine):
    reports, gated = small_gate
    assert gated.returncode == 0 and "GATE PASSED small (sha256:" in gated.stdout, gated.stdout + gated.stderr
    to = f"{registry}/rendergate/small:candidate"
    done = make("promote", *SMALL, f"IMAGE={SMALL_IMAGE}", f"TO={to}", f"REPORTS_DIR={reports}", timeout=CLI_TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr
    promoted = json.loads((reports / "promoted" / "small.json").read_text())
    pushed = promoted["promotion"]["pushed_digest"]
    assert pushed == manifest_digest(registry, "rendergate/small", "candidate")
    engine.client.images.remove(to)
    # The promoted image, gated again as users get it: pulled from the registry.
    pulled = make("gate", *SMALL, f"IMAGE={to}", f"REPORTS_DIR={reports / 'again'}")
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    assert f"{to}: pulled (sha256:" in pulled.stdout
    assert engine.client.images.get(to).id == promoted["image"]["digest"] == engine.client.images.get(SMALL_IMAGE).id
    engine.client.images.remove(to)


@pytest.mark.parametrize("case, words", [
    ("mismatched image", "mismatched: the verdict is about image sha256:"),
    ("manifest changed", "manifest.toml changed since the verdict: run the gate again"),
    ("too old", "old, more than the 0.864 s allowed: run the gate again"),
    ("no verdict", "no verdict (no run of the suites wrote one)"),
])
def test_promotion_refuses_a_verdict_that_is_not_about_this_candidate(passed_gate, tmp_path, case, words):
    reports, _ = passed_gate
    images, image = GATE_VARIANTS, "rendergate/text-only:dev"
    if case == "mismatched image":
        image = "rendergate/manim:dev"
    elif case == "manifest changed":
        images = tmp_path / "variants"
        shutil.copytree(GATE_VARIANTS, images)
        manifest = images / "text-only" / "manifest.toml"
        manifest.write_text(manifest.read_text().replace("latex = true", "latex = true\nxorg = true"))
    elif case == "no verdict":
        reports = tmp_path / "empty-reports"
    if case == "too old":  # the Makefile keeps the 7-day default; the command takes --max-age-days
        done = rendergate_cli(f"--images-dir={images}", "promote", "text-only", f"--image={image}",
                              "--to=rendergate-test/text-only:refused", "--max-age-days=0.00001", reports=reports)
    else:
        done = make("promote", "VARIANT=text-only", f"IMAGE={image}", "TO=rendergate-test/text-only:refused",
                    f"IMAGES_DIR={images}", f"REPORTS_DIR={reports}", timeout=CLI_TIMEOUT)
    assert done.returncode != 0
    assert words in done.stderr, done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_gate_refuses_requirements_that_no_gpu_could_validate(good_images, tmp_path):
    """On this CPU-only host the manim variant's GPU requirements are skipped under
    ALLOW_NO_GPU=1: the run is green, the gate is not."""
    reports = tmp_path / "reports"
    done = make("gate", "VARIANT=manim", "ALLOW_NO_GPU=1", f"REPORTS_DIR={reports}", "PYTEST_ARGS=-m 'not timed'")
    assert done.returncode != 0
    headline, *lines = done.stderr.splitlines()
    # Nothing failed: not FAILED but NOT VALIDATED, and what to do about it.
    assert headline.startswith("GATE REFUSED manim (sha256:") and "NOT VALIDATED: nothing failed" in headline, done.stderr
    no_gpu = next(line for line in lines if "no NVIDIA GPU on the host it ran on" in line)
    assert "run it on a GPU host" in no_gpu and " gpu" in no_gpu and "nvenc" in no_gpu, done.stderr
    assert "FAILED" not in done.stderr
    verdict = json.loads((reports / "verdicts" / "manim.json").read_text())
    assert verdict["complete"] and verdict["state"] == "not-validated"
    junit = junit_properties(reports)  # CI systems read the same state and what to do
    assert junit["rendergate.verdict.manim"] == "NOT VALIDATED"
    assert junit["rendergate.summary.manim"].splitlines() == verdict["summary"]
    assert verdict["requirements"]["latex"]["outcome"] == "passed"
    assert verdict["requirements"]["workloads.manim_parts"]["outcome"] == "not-run"  # deselected: -m 'not timed'


@pytest.mark.serial
def test_a_regressed_workload_fails_the_gate(good_images, known_bad_image, engine, tmp_path):
    """The parallel render promoted at about 1.7x on 2 cores; then a new image of the same variant
    whose workers all land on one core: still above its (low) threshold, far below the figure
    of the promoted image."""
    images, reports = tmp_path / "variants", tmp_path / "reports"
    (images / "parallel").mkdir(parents=True)
    (images / "parallel" / "manifest.toml").write_text(
        'description = "the parallel render alone"\n[run]\ngpus = "none"\ncommand = ["sleep", "infinity"]\n'
        'python = "/opt/venv/bin/python"\n[thresholds]\nparallel_speedup = 0.5\nmax_regression = 0.25\nrepeats = 3\n'
        '[workloads]\nparallel_frames = { frames = 8, workers = 2, size = "448x252", samples = 4 }\n')
    dockerfile = images / "parallel" / "Dockerfile"
    args = ["VARIANT=parallel", f"IMAGES_DIR={images}", f"REPORTS_DIR={reports}"]
    dockerfile.write_text("ARG BASE_IMAGE\nFROM rendergate/blender:dev\n")
    verdict = reports / "verdicts" / "parallel.json"
    before = used_by_others()
    first = make("gate", *args, timeout=TIMED_SUITE_TIMEOUT)
    if first.returncode != 0 and verdict.is_file():
        skip_when_host_busy(json.loads(verdict.read_text())["checks"], "2 workers vs 1", before)
    assert first.returncode == 0, first.stdout + first.stderr
    promoted = make("promote", *args, "IMAGE=rendergate/parallel:dev", "TO=rendergate-test/parallel:promoted",
                    timeout=CLI_TIMEOUT)
    assert promoted.returncode == 0, promoted.stderr
    engine.client.images.remove("rendergate-test/parallel:promoted")  # the kept verdict is what counts from here
    dockerfile.write_text(f"ARG BASE_IMAGE\nFROM {known_bad_image('workers-share-one-core')}\n")
    before = used_by_others()
    second = make("gate", *args, timeout=TIMED_SUITE_TIMEOUT)
    if verdict.is_file():
        skip_when_host_busy(json.loads(verdict.read_text())["checks"], "2 workers vs 1", before)
    assert second.returncode != 0
    assert "[regressed]" in second.stderr and "of the last promoted image (rendergate-test/parallel:promoted" in second.stderr
    checks = json.loads((reports / "verdicts" / "parallel.json").read_text())["checks"]
    regressed = [c for c in checks if c["cause"] == "regressed"]
    assert len(regressed) == 1 and regressed[0]["figures"]["2 workers vs 1"]["verdict"] == "pass"
    assert "[regressed]" in (reports / "report.html").read_text()


@pytest.mark.parametrize("gpus", [",", " ", ""])
def test_the_matrix_gate_refuses_an_empty_gpu_list(gpus, tmp_path):
    done = rendergate_cli("gate", "manim", f"--gpu={gpus}", reports=tmp_path)
    assert done.returncode == 1 and "GATE REFUSED manim: no GPU types given" in done.stderr, done.stdout + done.stderr


def test_make_gate_with_an_empty_gpu_list_fails(tmp_path):
    done = make("gate", "VARIANT=manim", "GPUS=,", f"REPORTS_DIR={tmp_path}", timeout=CLI_TIMEOUT)
    assert done.returncode != 0 and "GATE REFUSED manim: no GPU types given" in done.stderr


def _tampered(good_images, engine, tamper) -> dict:
    """manim's verdict as an attacker would hand it in: written by our code about the real manim
    image, then changed by `tamper`."""
    manim = load_variant(ROOT / "images" / "manim")
    image = {"ref": good_images["manim"], "digest": engine.image_digest(good_images["manim"]), "repo_digests": []}
    verdict = written_verdict(manim, {"gpu_type": "no GPU"}, image=image)
    tamper(verdict)
    return verdict


def _keep_only(names):
    def tamper(v):
        v["declared"] = names
        v["checks"] = [c for c in v["checks"] if c["requirement"] in names]
        v["requirements"] = {n: {"outcome": "passed", "checks": 1} for n in names}
        v["problems"], v["state"] = [], "passed"
    return tamper


def _variant_renamed(v):
    v["variant"] = "text-only"


def _declares_without_outcomes(v):
    v["checks"] = []
    v["requirements"] = {}
    v["problems"], v["state"] = [], "passed"


@pytest.mark.parametrize("tamper, words", [
    (_keep_only(["manimpango", "latex"]), ["checks of gpu: test_", "checks of nvenc: test_", "did not run"]),  # GPU requirements dropped
    (_declares_without_outcomes, ["checks of gpu: test_", "1 check of latex: test_mathtex_renders did not run"]),  # nothing ran
    (lambda v: v["host"].update(suite_version="0.0.1"), ["made by rendergate 0.0.1"]),
    (lambda v: v.update(manifest="sha256:" + "0" * 64), ["manifest.toml changed since the verdict"]),
    (lambda v: v["image"].update(digest="sha256:" + "1" * 64), ["mismatched: the verdict is about image sha256:111"]),
])
def test_the_gate_rejudges_a_verdict_against_the_current_manifest(tamper, words, good_images, engine, tmp_path):
    (tmp_path / "verdicts").mkdir()
    (tmp_path / "verdicts" / "manim.json").write_text(json.dumps(_tampered(good_images, engine, tamper)))
    done = rendergate_cli("gate", "manim", reports=tmp_path)
    assert done.returncode == 1 and done.stderr.startswith("GATE REFUSED manim"), done.stdout + done.stderr
    for word in words:
        assert word in done.stderr


def test_a_verdict_of_another_variant_is_refused(good_images, engine, tmp_path):
    (tmp_path / "verdicts").mkdir()
    (tmp_path / "verdicts" / "manim.json").write_text(json.dumps(_tampered(good_images, engine, _variant_renamed)))
    done = rendergate_cli("gate", "manim", reports=tmp_path)
    assert done.returncode == 1 and "it is about variant text-only, not manim" in done.stderr


def test_an_untampered_written_verdict_passes(good_images, engine, tmp_path):
    """The stand-in itself passes: the refusals above are the tampering's doing."""
    (tmp_path / "verdicts").mkdir()
    (tmp_path / "verdicts" / "manim.json").write_text(json.dumps(_tampered(good_images, engine, lambda v: None)))
    done = rendergate_cli("gate", "manim", reports=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("GATE PASSED manim"), done.stdout + done.stderr


@pytest.mark.parametrize("broken, words", [
    (lambda v: v.pop("checks"), "not a valid rendergate verdict: at the top: 'checks' is a required property"),
    (lambda v: v.update(checks="all passed"), "not a valid rendergate verdict: at .checks: 'all passed' is not of type 'array'"),
    (lambda v: v["host"].update(gpu_type=7), "not a valid rendergate verdict: at .host.gpu_type: 7 is not of type 'string'"),
    (lambda v: v.update(finished="yesterday"), "not a valid rendergate verdict: at .finished"),
    (lambda v: v.update(schema=2), "a verdict of schema 2, written by another rendergate: this one reads schema 1"),
])
@pytest.mark.parametrize("command", ["gate", "promote", "merge"])
def test_a_verdict_with_missing_or_wrong_fields_is_one_line_for_every_command(broken, words, command, good_images,
                                                                              engine, tmp_path):
    path = tmp_path / "verdicts" / "manim.json"
    path.parent.mkdir()
    verdict = _tampered(good_images, engine, lambda v: None)
    broken(verdict)
    path.write_text(json.dumps(verdict))
    args = {"gate": ["gate", "manim"], "merge": ["merge", str(path), f"--out={tmp_path / 'merged.html'}"],
            "promote": ["promote", "manim", f"--image={good_images['manim']}", "--to=rendergate-test/never:promoted",
                        f"--promoted={tmp_path / 'promoted'}"]}[command]
    done = rendergate_cli(*args, reports=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"rendergate: {path}: {words}"), done.stderr


def test_a_signed_attestation_round_trips_through_a_registry_and_a_tampered_one_is_refused(small_gate, registry,
                                                                                              engine, tmp_path):
    """The gate signs its passing verdict; promotion verifies it against the trusted key and the
    image, pushes image and attestation; `rendergate verify` reads it back from the registry. A
    wrong key, a changed envelope and an attestation about another image are each refused."""
    from test_attestation import _changed, key_pair

    from rendergate.release import attestation

    shared, _ = small_gate
    reports = tmp_path / "reports"
    shutil.copytree(shared / "verdicts", reports / "verdicts")
    private, public = key_pair(tmp_path, "ed25519")
    _, wrong = key_pair(tmp_path, "ecdsa")
    to = f"{registry}/rendergate/small:attested"

    def cli(*args, env=None):
        return rendergate_cli(f"--images-dir={SMALL_REPO / 'images'}", f"--checks={SMALL_REPO / 'checks'}", *args,
                              reports=reports, env=env)

    signing = cli("gate", "small", f"--image={SMALL_IMAGE}", env={attestation.SIGNING_KEY_ENV: private.read_text()})
    assert signing.returncode == 0 and f"attestation about {SMALL_IMAGE}" in signing.stdout, signing.stderr
    assert private.read_text().split("\n")[1] not in signing.stdout + signing.stderr  # the key is never shown
    refused = cli("promote", "small", f"--image={SMALL_IMAGE}", f"--to={to}", f"--trusted-key={wrong}",
                  f"--sign-key={private}", f"--promoted={tmp_path / 'promoted'}")
    assert refused.returncode == 1 and "the signature does not verify with the trusted key" in refused.stderr
    assert not engine.image_exists(to)  # refused before anything was tagged
    unsigned = cli("promote", "small", f"--image={SMALL_IMAGE}", f"--to={to}", f"--trusted-key={public}",
                   f"--promoted={tmp_path / 'promoted'}")
    assert unsigned.returncode == 2 and "so promotion signs it: give the signing key too" in unsigned.stderr
    assert not engine.image_exists(to)
    promoted = cli("promote", "small", f"--image={SMALL_IMAGE}", f"--to={to}", f"--trusted-key={public}",
                   f"--sign-key={private}", f"--promoted={tmp_path / 'promoted'}")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert "its SBOM signed too" in signing.stdout and "its signed verdict and SBOM pushed as" in promoted.stdout
    pushed = manifest_digest(registry, "rendergate/small", "attested")
    # The image's SBOM, signed as a second predicate, is in the same artifact next to the image.
    pulled_files = attestation._registry(to).pull(target=attestation.attestation_ref(to, pushed), outdir=str(tmp_path / "att"))
    sbom_envelope = attestation.read(next(Path(f) for f in pulled_files if Path(f).name == "sbom.intoto.json"))
    sbom = attestation.verify(sbom_envelope, attestation.public_key(public), pushed, "sbom", attestation.SBOM_PREDICATE_TYPE)
    assert sbom["predicate"]["metadata"]["component"]["version"] == engine.client.images.get(SMALL_IMAGE).id
    statement = json.loads(base64.b64decode(json.loads((tmp_path / "promoted" / "small.intoto.json").read_text())["payload"]))
    assert {"name": to, "digest": {"sha256": pushed.removeprefix("sha256:")}} in statement["subject"]  # what a cluster pulls
    engine.client.images.remove(to)
    verified = cli("verify", to, f"--key={public}")
    assert verified.returncode == 0 and verified.stdout.startswith(f"VERIFIED {to}: signed rendergate verdict of small")
    # README's cluster policy, on the Statement as the registry holds it: it admits this image, and no other or failed one.
    _, pulled = attestation.pull_and_verify(to, attestation.public_key(public))
    assert _policy_admits(tmp_path, pulled, pushed)
    assert not _policy_admits(tmp_path, pulled, "sha256:" + "0" * 64)
    assert not _policy_admits(tmp_path, {**pulled, "predicate": {**pulled["predicate"], "state": "failed"}}, pushed)
    other = cli("verify", to, f"--key={wrong}")
    assert other.returncode == 1 and "the signature does not verify with the trusted key" in other.stderr
    # Tampered in the registry: the attested verdict changed, then an attestation about another image.
    envelope = json.loads((tmp_path / "promoted" / "small.intoto.json").read_text())
    signer = attestation.private_key(private)
    for planted, words in ((_changed(envelope), "the signature does not verify"),
                           (attestation.attest(json.loads((reports / "verdicts" / "small.json").read_text()),
                                               [(SMALL_IMAGE, "sha256:" + "0" * 64)], signer), "the attestation is about sha256:000")):
        attestation.push(to, {attestation.PREDICATE_TYPE: planted}, manifest_digest(registry, "rendergate/small", "attested"))
        done = cli("verify", to, f"--key={public}")
        assert done.returncode == 1 and done.stderr.startswith(f"VERIFY REFUSED {to}") and words in done.stderr
        assert "Traceback" not in done.stderr


def _policy_admits(tmp_path, statement: dict, digest: str) -> bool:
    """README's jq policy (its one jq block), run by jq on a Statement for the digest a cluster pulls."""
    program = re.search(r"```jq\n(.*?)```", (ROOT / "README.md").read_text(), re.S)[1]
    (tmp_path / "policy.jq").write_text(textwrap.dedent(program))
    (tmp_path / "statement.json").write_text(json.dumps(statement))
    done = subprocess.run(["jq", "-e", "--arg", "digest", digest, "-f", str(tmp_path / "policy.jq"),
                           str(tmp_path / "statement.json")], capture_output=True, text=True, timeout=CLI_TIMEOUT)
    assert done.returncode in (0, 1), done.stderr  # 0: true, 1: false; anything else, a broken program
    return done.returncode == 0
