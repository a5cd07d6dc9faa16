"""Parallel render and stitch, the render-farm pattern: the frames of a Cycles animation mapped
over N one-thread workers and combined with ffmpeg, against the same frames rendered by one.

The stitched video must hold every frame exactly once: seam frames are compared with the serial
render's. The gate: N workers at least `thresholds.parallel_speedup` times faster than one.
"""
import pytest

from rendergate.media import frames_of, load_image, probe_video, require_seams, require_video
from rendergate.timing import Speedup, measure_pair
from rendergate.workloads import STITCH_FPS, chunks, render_frames, render_frames_parallel, stitch

pytestmark = pytest.mark.requires("workloads.parallel_frames")

# Seam frames went through x264 (crf 16): against the serial render's PNGs they differ by
# compression noise only, a few levels of 255 at 4 samples; a wrong frame differs by tens.
SEAM_TOLERANCE = 6.0


@pytest.mark.timed
def test_parallel_render_and_stitch(target, variant, requirement, speed_gate, artifacts):
    total, workers = requirement["frames"], requirement["workers"]
    size, samples = requirement["size"], requirement["samples"]
    serial_dir, parallel_dir = f"{target.workdir}/serial", f"{target.workdir}/parallel"

    def serial():
        target.check(f"rm -rf {serial_dir}", "cleaning")
        render_frames(target, serial_dir, total, size, samples, threads=1)

    def parallel():
        target.check(f"rm -rf {parallel_dir}", "cleaning")
        render_frames_parallel(target, parallel_dir, total, workers, size, samples)

    def warm_up():  # one frame per worker, all at once: every core busy before anything is timed
        render_frames_parallel(target, f"{target.workdir}/warm-up", workers, workers, size, samples)

    base, cand = measure_pair(serial, parallel, variant.thresholds.get("repeats", 3), warm_up)

    video = f"{target.workdir}/stitched.mp4"
    stitch(target, parallel_dir, video)
    artifacts("stitched.mp4", target.fetch(video))
    require_video(probe_video(target, video), video, "h264", *(int(n) for n in size.split("x")), STITCH_FPS, total)
    seams = [last for _, last in chunks(total, workers)[:-1]]  # 1-based last frame of each chunk
    around = sorted({i for s in seams for i in (s - 1, s) if 0 <= i < total})  # 0-based, both sides
    serial = {i: load_image(target.fetch(f"{serial_dir}/frame_{i + 1:04d}.png"))
              for i in {n for i in around for n in (i - 1, i, i + 1) if 0 <= n < total}}
    require_seams(frames_of(target, video, around), serial, SEAM_TOLERANCE, "the stitched video")

    speed_gate(f"{workers} workers vs 1", Speedup(base, cand, variant.thresholds["parallel_speedup"]))
