"""What infra reviewers and CI read: the HTML report and the verdicts, from real runs of the
suites. Secrets never reach them; an interrupted or killed run leaves both, marked partial."""
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import docker
from PIL import Image

from conftest import (
    BASE_IMAGE,
    CLI_TIMEOUT,
    INTERRUPTED_RUN_TIMEOUT,
    ROOT,
    SUITE_TIMEOUT,
    WITH_SIGINT,
    bounded,
    end_tree,
    process_tree,
    read_verdicts,
    rendergate_cli,
    require_tool,
)
from rendergate.engines.docker_engine import LABEL_OWNER, owner_label

HOST_SECRET = "hs-5b0c9e7d2a41f6"  # a value of a secret-named variable in the environment of the run
MANIFEST_SECRET = "ms-1f8e2d3c4b5a69"  # a value of a secret-named variable the manifest gives the container
URL_PASSWORD = "pw-7c1e55aa90"  # printed by the known-bad ffmpeg, never seen by rendergate before
GIT_URL_TOKEN = "ghp_4Tq8Zr2Lm9Xw6Vb1Nc3Kd7Hf5Js0Pa2Ye8Ui"  # Jenkins' GIT_URL, which pytest-metadata reports


def test_secrets_never_reach_a_report_a_verdict_or_a_log(known_bad_image, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(ROOT / "images" / "manim", images / "manim")
    manifest = images / "manim" / "manifest.toml"
    manifest.write_text(manifest.read_text().replace(
        "[run]\n", f'[run]\nenv = {{ RENDER_API_TOKEN = "{MANIFEST_SECRET}", RENDER_QUEUE = "queue-visible-7" }}\n'))
    reports = tmp_path / "reports"
    env = {**os.environ, "RENDER_FARM_PASSWORD": HOST_SECRET, "JENKINS_URL": "https://ci.example.com/",
           "GIT_URL": f"https://ci-bot:{GIT_URL_TOKEN}@github.com/studio/render.git"}
    proc = bounded(
        [sys.executable, "-m", "pytest", "suites", "-q", f"--images-dir={images}", "--variant=manim",
         f"--image={known_bad_image('ffmpeg-leaks-secrets')}", "--allow-no-gpu", f"--reports-dir={reports}",
         f"--html={reports / 'report.html'}", "--self-contained-html", f"--junitxml={reports / 'junit.xml'}",
         "-k", "test_encoder_listed", f"--base-image={BASE_IMAGE}"], SUITE_TIMEOUT, cwd=ROOT, env=env)
    written = {p: p.read_text(errors="replace") for p in reports.rglob("*") if p.is_file()}
    written[Path("terminal")] = proc.stdout + proc.stderr
    assert {"report.html", "junit.xml", "manim.json"} <= {p.name for p in written}
    assert "queue-visible-7" in written[reports / "report.html"], "the env was printed: redaction had work to do"
    assert "ci.example.com" in written[reports / "report.html"], "the CI metadata made it to the environment table"
    for path, text in written.items():
        for secret in (HOST_SECRET, MANIFEST_SECRET, URL_PASSWORD, GIT_URL_TOKEN):
            assert secret not in text, f"{secret} leaked into {path}"
    assert "[redacted]" in written[reports / "report.html"]


@contextmanager
def _suite_child(engine, reports: Path, *args: str, sigint: bool = False) -> Iterator[subprocess.Popen]:
    """The suites in a child this test interrupts; with `sigint`, given SIGINT's default action
    (WITH_SIGINT). Whatever the test's outcome, no run of it is left behind: its tree killed, its
    containers removed."""
    proc = subprocess.Popen(
        [*(WITH_SIGINT if sigint else [sys.executable]), "-m", "pytest", "suites", "-q", f"--reports-dir={reports}",
         f"--html={reports / 'report.html'}", "--self-contained-html", f"--base-image={BASE_IMAGE}", *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield proc
    finally:
        left = _owned(engine, [proc.pid])
        end_tree(proc)
        proc.wait()
        proc.stdout.close()
        for c in left + _owned(engine, [proc.pid]):
            engine.remove(c["id"])


def _owned(engine, pids: list[int]) -> list[dict]:
    """The containers that the runs of these processes own."""
    owners = {owner_label(pid) for pid in pids}
    return [c for c in engine.containers() if c["labels"].get(LABEL_OWNER) in owners]


def _owned_below(engine, proc: subprocess.Popen) -> list[dict]:
    """The containers of the run that `proc` is, or that runs below it (under `script`)."""
    return _owned(engine, [p.pid for p in process_tree(proc.pid)])


def _inside_the_hung_ffmpeg(engine, proc: subprocess.Popen) -> list[dict]:
    """Wait until the run has started its container and a check is inside the known-bad image's
    ffmpeg (it sleeps for an hour); the run's containers."""
    deadline = time.monotonic() + CLI_TIMEOUT  # measured: a few seconds
    while True:
        assert proc.poll() is None and time.monotonic() < deadline, "the run never reached the hung ffmpeg"
        owned = _owned_below(engine, proc)
        if any("sleep 3600" in command for c in owned for command in _commands(engine, c["id"])):
            return owned
        time.sleep(0.5)


def _commands(engine, container: str) -> list[str]:
    """The command lines running in a container (none once it stops)."""
    try:
        return [" ".join(row) for row in engine.client.api.top(container).get("Processes") or []]
    except docker.errors.APIError:
        return []


def _refusals(reports: Path, image: str) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    def rendergate(*args):
        return rendergate_cli(*args, reports=reports)
    return (rendergate("gate", "manim", f"--image={image}"),
            rendergate("promote", "manim", f"--image={image}", "--to=rendergate-test/never:promoted",
                       f"--promoted={reports / 'promoted'}"))


def test_interrupted_run_leaves_a_partial_report_and_verdict_that_are_refused(known_bad_image, engine, tmp_path):
    image = known_bad_image("ffmpeg-hangs")
    reports = tmp_path / "reports"
    with _suite_child(engine, reports, "--variant=manim", f"--image={image}", "--allow-no-gpu", sigint=True) as proc:
        _inside_the_hung_ffmpeg(engine, proc)
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=INTERRUPTED_RUN_TIMEOUT)
        assert _owned(engine, [proc.pid]) == []
    assert "PARTIAL" in output
    verdict = read_verdicts(reports)["manim"]
    assert verdict["complete"] is False and verdict["state"] == "not-validated"
    assert "PARTIAL" in verdict["problems"][0]
    assert "PARTIAL: the run was interrupted" in (reports / "report.html").read_text(), output
    gate, promote = _refusals(reports, image)
    assert gate.returncode == promote.returncode == 1
    assert "the run did not finish (interrupted or crashed): this verdict is PARTIAL" in gate.stderr
    assert "PROMOTION REFUSED" in promote.stderr and "PARTIAL" in promote.stderr


def test_ctrl_c_on_a_terminal_ends_a_run_with_workers_in_seconds(known_bad_image, engine, tmp_path):
    """A person's Ctrl-C: typed on the run's terminal (`script` gives it one), the terminal sends
    SIGINT to the controller and both xdist workers at once, one of them inside a hung ffmpeg. The
    run ends, its container removed, its verdict PARTIAL (5.4 s measured on a busy machine; the
    test holds it to INTERRUPTED_RUN_TIMEOUT)."""
    script = require_tool("script", "bsdutils")
    reports = tmp_path / "reports"
    command = shlex.join([*WITH_SIGINT, "-m", "pytest", "suites", "-q", "-n", "2", f"--reports-dir={reports}",
                          f"--base-image={BASE_IMAGE}", "--variant=manim", f"--image={known_bad_image('ffmpeg-hangs')}",
                          "--allow-no-gpu"])
    terminal = subprocess.Popen([script, "-qfec", command, "/dev/null"], cwd=ROOT, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    owned = []
    try:
        owned = _inside_the_hung_ffmpeg(engine, terminal)
        terminal.stdin.write(b"\x03")
        terminal.stdin.flush()
        output = terminal.communicate(timeout=INTERRUPTED_RUN_TIMEOUT)[0].decode(errors="replace")
        left = [c for c in engine.containers() if c["id"] in {o["id"] for o in owned}]
    finally:
        owned += _owned_below(engine, terminal)  # a run that never reached the ffmpeg: its container too
        end_tree(terminal)
        terminal.wait()
        for container in owned:
            engine.remove(container["id"])
    assert left == [] and "PARTIAL" in output, output
    verdict = read_verdicts(reports)["manim"]
    assert verdict["complete"] is False and "PARTIAL" in verdict["problems"][0]


def test_sigterm_to_a_run_with_workers_removes_the_shared_containers(known_bad_image, engine, tmp_path):
    """CI cancelling a job under `-n 2`: the controlling process owns the containers its workers
    share, and removes them on SIGTERM; the verdict and report say partial. SIGINT as this test
    run was given it, as CI's cancel finds it: ignored where CI was launched with `&` (execnet then
    cannot interrupt a worker inside a check, and ends it 15 s later: 11.5 s to exit, measured)."""
    reports = tmp_path / "reports"
    with _suite_child(engine, reports, "-n", "2", "--variant=manim", f"--image={known_bad_image('ffmpeg-hangs')}",
                      "--allow-no-gpu") as proc:
        owned = _inside_the_hung_ffmpeg(engine, proc)
        assert len(owned) == 1  # one container of the variant, for both workers
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=INTERRUPTED_RUN_TIMEOUT)
        assert _owned(engine, [proc.pid]) == [], output
    verdict = read_verdicts(reports)["manim"]
    assert verdict["complete"] is False and "PARTIAL" in verdict["problems"][0]
    assert "PARTIAL" in (reports / "report.html").read_text()


def test_killed_run_leaves_a_partial_report_and_verdict(known_bad_image, engine, tmp_path):
    """SIGKILL: nothing of the run gets to clean up; what it wrote as it went must say partial
    (its container is swept by the next run: test_lifecycle)."""
    image = known_bad_image("ffmpeg-hangs")
    reports = tmp_path / "reports"
    with _suite_child(engine, reports, "--variant=manim", f"--image={image}", "--allow-no-gpu") as proc:
        _inside_the_hung_ffmpeg(engine, proc)
        proc.kill()
        proc.wait()
    verdict = read_verdicts(reports)["manim"]
    assert verdict["complete"] is False and verdict["finished"] is None
    assert "PARTIAL: the run had not finished" in (reports / "report.html").read_text()
    gate, _ = _refusals(reports, image)
    assert gate.returncode == 1 and "PARTIAL" in gate.stderr


def test_parallel_workers_never_clobber_each_others_files(good_images, suite, tmp_path):
    """Both workers check both variants at once, in the one container of each, each worker in a
    folder and on an X display of its own, writing evidence and logs at the same time."""
    report = tmp_path / "reports" / "report.html"
    run = suite("-n", "2", "--variant=xorg-glx", "--variant=manim", "--allow-no-gpu",
                "-m", "not timed", f"--html={report}", "--self-contained-html")
    assert run.complete and run.leftover == [], run.output
    for picture in (run.reports / "artifacts").rglob("*.png"):
        Image.open(picture).verify()  # every kept picture whole
    for name in ("xorg-glx", "manim"):
        assert (run.reports / "logs" / f"{name}-build.log").read_text().rstrip().endswith(f"rendergate/{name}:dev")
    assert not list((run.reports / "logs").glob(".*"))  # no build log left half-written
    checks = [c for c in run.checks if c["outcome"] != "not-declared"]
    assert len({c["nodeid"] for c in checks}) == len(checks)  # each check reported once, by the controller
    assert all(c["anchor"] in report.read_text() for c in checks)
