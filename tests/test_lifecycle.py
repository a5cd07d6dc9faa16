"""Containers never outlive a run (normal end, a hung command, Ctrl-C, a killed run), and bad
invocations get one clear line before anything starts."""
import socket
import subprocess
from pathlib import Path

import pytest

from rendergate.engines.docker_engine import LABEL_OWNER, LABEL_RUN, LABEL_VARIANT

ROOT = Path(__file__).resolve().parents[1]


def test_hung_command_times_out_and_the_container_goes(known_bad_image, suite):
    run = suite("--variant=manim", f"--image={known_bad_image('ffmpeg-hangs')}", "--allow-no-gpu",
                "--check-timeout=3", "-k", "test_encoder_listed")
    result = run.outcome("test_encoder_listed", "manim", "h264_nvenc")
    assert (result["outcome"], result["cause"]) == ("failed", "timeout")
    assert "did not finish within 3 s" in result["message"]
    assert run.leftover == []


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
    (["--variant=manim", "--image=rendergate/no-such:image"], {}, "manim: cannot pull rendergate/no-such:image: "),
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
