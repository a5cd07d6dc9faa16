"""Parallel render and stitch, the render-farm pattern: the frames of a Cycles animation mapped
over N one-thread workers and combined into a video, against the same frames rendered by one.

Where the frames are combined is the manifest's to say (`combine`): by the image's own ffmpeg
(the default: ffmpeg is then a requirement of the image), or outside it, stitched by rendergate
on its side, as a pipeline whose render image has no ffmpeg does in a stage of its own. The
stitched video must hold every frame exactly once: seam frames are compared with the serial
render's, by rendergate's decoder. The gate: N workers at least `thresholds.parallel_speedup`
times faster than one.
"""
import pytest

from rendergate.checks.media import decode_video, encode_frames, load_image, require_seams, require_video
from rendergate.checks.timing import Speedup
from rendergate.checks.workloads import STITCH_FPS, chunks, render_frames, render_frames_parallel, stitch
from rendergate.core.diagnosis import CheckFailed
from rendergate.core.known_causes import tool_missing
from rendergate.core.requirements import declare
from rendergate.core.schema import SIZE, integer, one_of, size, table
from rendergate.plugin import requires

# Where the frames are stitched: by the image's own ffmpeg, or by rendergate on its side.
COMBINE = ("image", "rendergate")
PARALLEL_FRAMES = declare(
    "workloads.parallel_frames",
    table({"frames": integer(1, 10000), "workers": integer(1, 256), "size": size, "samples": integer(1, 4096)},
          {"combine": one_of(COMBINE)}),
    f'{{ frames = 12, workers = 2, size = "448x252", samples = 4 }} (frames 1 to 10000, workers 1 to 256, size {SIZE}, '
    'samples 1 to 4096; and combine = "image" (the default: the image\'s ffmpeg stitches the frames) or "rendergate" '
    "(they are stitched outside the image))",
    "frames rendered by N workers, stitched into one video holding each frame once, faster than one worker",
    thresholds={"parallel_speedup": 1.6}, example='{ frames = 12, workers = 2, size = "448x252", samples = 4 }')
pytestmark = requires(PARALLEL_FRAMES)

# Seam frames went through x264 (crf 16): against the serial render's PNGs they differ by
# compression noise only, a few levels of 255 at 4 samples; a wrong frame differs by tens.
SEAM_TOLERANCE = 6.0


def stitched_video(target, frames_dir: str, total: int, combine: str) -> bytes:
    """The frames as one video, combined where the manifest says."""
    if combine == "rendergate":
        return encode_frames([target.fetch(f"{frames_dir}/frame_{n:04d}.png") for n in range(1, total + 1)], STITCH_FPS)
    video = f"{target.workdir}/stitched.mp4"
    stitch(target, frames_dir, video)
    return target.fetch(video)


@pytest.mark.timed
def test_parallel_render_and_stitch(target, variant, requirement, speed_gate, measure, artifacts, figures):
    """Cycles frames rendered by N workers and stitched into a video, timed against one worker."""
    total, workers = requirement["frames"], requirement["workers"]
    size, samples = requirement["size"], requirement["samples"]
    combine = requirement.get("combine", "image")
    serial_dir, parallel_dir = f"{target.workdir}/serial", f"{target.workdir}/parallel"
    if combine == "image" and target.run("command -v ffmpeg").rc != 0:
        missing = tool_missing("ffmpeg", target.facts())
        raise CheckFailed(missing.cause, f"{missing.message}, or say that frames are combined outside the image: "
                                         'combine = "rendergate" in workloads.parallel_frames')

    def serial():
        target.check(f"rm -rf {serial_dir}", "rm -rf (cleaning)")
        render_frames(target, serial_dir, total, size, samples, threads=1)

    def parallel():
        target.check(f"rm -rf {parallel_dir}", "rm -rf (cleaning)")
        render_frames_parallel(target, parallel_dir, total, workers, size, samples)

    def warm_up():  # one frame per worker, all at once: every core busy before anything is timed
        render_frames_parallel(target, f"{target.workdir}/warm-up", workers, workers, size, samples)

    base, cand = measure(serial, parallel, variant.thresholds.get("repeats", 3), warm_up)

    seams = [last for _, last in chunks(total, workers)[:-1]]  # 1-based last frame of each chunk
    around = sorted({i for s in seams for i in (s - 1, s) if 0 <= i < total})  # 0-based, both sides
    data = stitched_video(target, parallel_dir, total, combine)
    artifacts("stitched.mp4", data)
    judged = decode_video(data, f"the video stitched by {'rendergate' if combine == 'rendergate' else 'the image'}",
                          keep=around)
    figures("stitched.mp4", {**judged.info.as_dict(), "combined_by": combine})
    require_video(judged.info, "the stitched video", "h264", *(int(n) for n in size.split("x")), STITCH_FPS, total)
    serial = {i: load_image(target.fetch(f"{serial_dir}/frame_{i + 1:04d}.png"))
              for i in {n for i in around for n in (i - 1, i, i + 1) if 0 <= n < total}}
    require_seams(judged.frames, serial, SEAM_TOLERANCE, "the stitched video")

    speed_gate(f"{workers} workers vs 1", Speedup(base, cand, variant.thresholds["parallel_speedup"]))
