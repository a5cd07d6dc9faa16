"""The known-good images pass every check that can pass without a GPU; the rest are counted as
not validated (never as passes), and nothing is left running."""
import time

WORKERS = 2

def test_good_images_pass_all_they_can_without_gpu(good_images, suite, engine):
    started = time.time()
    run = suite("-n", str(WORKERS), "--allow-no-gpu", timeout=900)
    assert run.returncode == 0, run.output
    assert run.complete
    outcomes = {r["outcome"] for r in run.results}
    assert outcomes <= {"passed", "skipped", "no-gpu"}, run.output
    for r in run.results:
        if r["outcome"] == "skipped":
            assert "does not declare" in r["message"]
        if r["outcome"] == "no-gpu":
            assert "no NVIDIA GPU on this host" in r["message"]
    passed = {(r["variant"], r["check"]) for r in run.results if r["outcome"] == "passed"}
    assert {("manim", "test_encoder_listed"), ("manim", "test_manimpango_renders_text"),
            ("manim", "test_mathtex_renders"), ("blender", "test_bpy_loads_cycles"),
            ("xorg-glx", "test_xorg_starts"), ("xorg-glx", "test_glx_answers"),
            ("xorg-glx", "test_vnc_serves_display")} <= passed
    assert "checks were NOT validated: no NVIDIA GPU on this host" in run.output
    assert run.leftover == []
    starts = list(engine.client.events(since=int(started), until=int(time.time()) + 1, decode=True, filters={
        "type": "container", "event": "start", "label": f"rendergate.run={run.run_id}"}))
    assert 1 <= len(starts) <= len(good_images) * WORKERS  # one container per variant per worker at most


def test_gpu_requirement_without_gpu_fails_unless_allowed(suite):
    run = suite("--variant=host")
    result = run.outcome("test_nvidia_smi_and_nvml_agree", "host")
    assert (result["outcome"], result["cause"]) == ("failed", "no-gpu-on-host")
    assert result["message"].startswith("cannot validate: no NVIDIA GPU on this host")
    assert run.returncode == 1
    allowed = suite("--variant=host", "--allow-no-gpu")
    assert allowed.outcome("test_nvidia_smi_and_nvml_agree", "host")["outcome"] == "no-gpu"
    assert allowed.returncode == 0
