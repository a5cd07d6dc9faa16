"""Containers never outlive a run (normal end, a hung command, Ctrl-C, a killed run), and bad
invocations get one clear line before anything starts."""
import subprocess
import threading
from pathlib import Path

import pytest

from rendergate.engines.docker_engine import LABEL_OWNER, LABEL_RUN, LABEL_VARIANT, owner_label

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
        labels={LABEL_RUN: "killed-run", LABEL_VARIANT: "xorg-glx", LABEL_OWNER: owner_label(dead.pid)})
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


def test_commands_run_in_one_round_trip_still_name_what_failed_or_hung():
    """Target.run_after: the tools, steps and command of one exec each answer for themselves (on
    this host's target: the same shell code a container runs)."""
    from rendergate.core.diagnosis import Cause, CheckFailed
    from rendergate.core.manifest import load_variant
    from rendergate.engines.host import LocalTarget

    target = LocalTarget(load_variant(ROOT / "images" / "host"), default_timeout=2)
    try:
        result, steps = target.run_after("echo done", tools=("sh",), steps=(("listing", "echo first"),))
        assert (result.stdout, steps) == ("done\n", ["first\n"])
        with pytest.raises(CheckFailed) as missing:
            target.run_after("echo never", tools=("a-tool-nobody-has",))
        assert missing.value.diagnosis.cause is Cause.TOOL_MISSING and "a-tool-nobody-has" in str(missing.value)
        with pytest.raises(CheckFailed) as failed:
            target.run_after("echo never", steps=(("writing the config", "echo cannot write >&2; exit 3"),))
        assert "writing the config" in str(failed.value) and "never" not in str(failed.value)
        with pytest.raises(CheckFailed) as hung:
            target.run_after("echo never", steps=(("quick", "true"), ("stuck", "sleep 30")), timeout=1)
        assert hung.value.diagnosis.cause is Cause.TIMEOUT and hung.value.diagnosis.message.startswith("`sleep 30` did not finish within 1 s")
    finally:
        target.close()


def test_a_container_that_stops_or_goes_while_its_checks_run_is_one_line(engine, small_image, tmp_path):
    """Commands reach a container through the engine's exec API: when the container has stopped
    (its main process killed) or was removed under the run, the check's line says which, never a
    traceback of the engine's error."""
    from rendergate.core.diagnosis import Cause, CheckFailed
    from rendergate.core.manifest import load_variant
    from rendergate.engines.docker import DockerTarget
    from rendergate.engines.docker_engine import owner_label
    from rendergate.engines.targets import Result

    variant = load_variant(ROOT / "images" / "xorg-glx")  # its settings; the image is the small busybox one
    target = DockerTarget.start(engine, variant, small_image, "lifecycle-stops", owner_label(), tmp_path, 10)
    try:
        assert target.run("echo up; echo said >&2; exit 3") == Result("echo up; echo said >&2; exit 3", 3, "up\n", "said\n")
        killer = threading.Timer(1, target.container.kill)
        killer.start()
        with pytest.raises(CheckFailed) as killed:  # the command running when the container is killed
            target.run("sleep 20")
        killer.join()
        with pytest.raises(CheckFailed) as stopped:  # and any command after
            target.run("echo never")
        for failure in (killed, stopped):
            assert failure.value.diagnosis.cause is Cause.TARGET_UNAVAILABLE
            assert "stopped while the checks ran" in str(failure.value) and "\n" not in str(failure.value)
        engine.remove(target.container.id)
        with pytest.raises(CheckFailed) as gone:
            target.run("echo never")
        assert "is gone: removed while the checks ran" in str(gone.value)
    finally:
        engine.remove(target.container.id)
        target.close()
