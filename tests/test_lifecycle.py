"""Containers never outlive a run (normal end, a hung command, Ctrl-C, a killed run), and bad
invocations get one clear line before anything starts."""
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rendergate.engine import LABEL_OWNER, LABEL_RUN, LABEL_VARIANT

ROOT = Path(__file__).resolve().parents[1]


def test_hung_command_times_out_and_the_container_goes(known_bad_image, suite):
    run = suite("--variant=manim", f"--image={known_bad_image('ffmpeg-hangs')}", "--allow-no-gpu",
                "--check-timeout=3", "-k", "test_encoder_listed")
    result = run.outcome("test_encoder_listed", "manim", "h264_nvenc")
    assert (result["outcome"], result["cause"]) == ("failed", "timeout")
    assert "did not finish within 3 s" in result["message"]
    assert run.leftover == []


def test_ctrl_c_removes_containers_and_marks_results_partial(known_bad_image, engine, tmp_path):
    image = known_bad_image("ffmpeg-hangs")
    results = tmp_path / "results.json"
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "suites", "-q", "--variant=manim", f"--image={image}",
                             "--allow-no-gpu", f"--results-json={results}", "-k", "test_encoder_listed"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    owner = f"{socket.gethostname()}:{proc.pid}"
    deadline = time.monotonic() + 120
    def owned():
        return [c for c in engine.containers() if c["labels"].get(LABEL_OWNER) == owner]

    while not owned():
        assert proc.poll() is None and time.monotonic() < deadline, "the run never started its container"
        time.sleep(0.5)
    time.sleep(3)  # inside the hung ffmpeg by now
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert owned() == []
    assert json.loads(results.read_text())["complete"] is False
    assert "PARTIAL" in output


def test_stale_containers_of_a_killed_run_are_swept(engine, good_images, suite):
    dead = subprocess.Popen(["true"])
    dead.wait()
    engine.client.containers.run(
        good_images["xorg-glx"], ["sleep", "infinity"], detach=True,
        labels={LABEL_RUN: "killed-run", LABEL_VARIANT: "xorg-glx", LABEL_OWNER: f"{socket.gethostname()}:{dead.pid}"})
    try:
        run = suite("--variant=xorg-glx", "--allow-no-gpu", "-k", "test_xorg_starts")
        assert run.returncode == 0, run.output
        assert engine.containers("killed-run") == []
    finally:
        for c in engine.containers("killed-run"):
            engine.remove(c["id"])


@pytest.mark.parametrize("args, env, line", [
    (["--variant=nope"], {}, "unknown variant nope (known: "),
    (["--image=rendergate/manim:dev"], {}, "--image needs exactly one --variant"),
    (["--variant=manim", "--image=rendergate/no-such:image"], {}, "--image rendergate/no-such:image: no such image"),
    (["--variant=manim"], {"DOCKER_HOST": "unix:///nonexistent/docker.sock"},
     "Docker engine not reachable at unix:///nonexistent/docker.sock"),
])
def test_bad_invocation_is_one_clear_line(suite, args, env, line, monkeypatch):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    run = suite(*args)
    assert run.returncode == 4
    assert line in run.output
    assert "Traceback" not in run.output
