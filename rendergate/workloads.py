"""Producing the canonical workloads' outputs inside a target. Judging them is rendergate.media's
job, and timing them rendergate.timing's: the suites put the three together.

The workload sources live in fixtures/workloads/ and are copied into the target once.
"""
from __future__ import annotations

import shlex
from pathlib import Path

from .manifest import MANIM_QUALITIES
from .targets import Result

SOURCES = Path(__file__).resolve().parents[1] / "fixtures" / "workloads"
REFERENCES = Path(__file__).resolve().parents[1] / "fixtures" / "references"
STITCH_FPS = 24


def sources(target) -> str:
    """Where the workload sources are in the target (copied there on first use)."""
    if "workloads" not in target.memo:
        target.put(SOURCES, f"{target.workdir}/workloads")
        target.memo["workloads"] = f"{target.workdir}/workloads"
    return target.memo["workloads"]


def _cycles_command(target, out: str, first: int, last: int, total: int, size: str, samples: int,
                    threads: int, device: str) -> str:
    return (f"{target.python} {sources(target)}/cycles_scene.py --frames {first}-{last} --total {total} "
            f"--size {size} --samples {samples} --threads {threads} --device {device} --out {out} >/dev/null")


def render_frames(target, out: str, total: int, size: str, samples: int, threads: int = 0,
                  device: str = "CPU", frames: tuple[int, int] | None = None) -> Result:
    """Frames of the canonical Cycles animation, one process, as out/frame_0001.png ..."""
    first, last = frames or (1, total)
    return target.check(f"mkdir -p {out} && " + _cycles_command(target, out, first, last, total, size, samples,
                                                               threads, device), "the Cycles render")


def chunks(total: int, workers: int) -> list[tuple[int, int]]:
    """Contiguous 1-based frame ranges, one per worker, as even as can be."""
    bounds = [round(total * i / workers) for i in range(workers + 1)]
    return [(bounds[i] + 1, bounds[i + 1]) for i in range(workers) if bounds[i + 1] > bounds[i]]


def render_frames_parallel(target, out: str, total: int, workers: int, size: str, samples: int) -> None:
    """The animation split over `workers` processes of one thread each (the render-farm pattern,
    one worker per core), in the chunks of chunks()."""
    parts = chunks(total, workers)
    commands = [_cycles_command(target, out, first, last, total, size, samples, 1, "CPU") for first, last in parts]
    script = " ".join(f"( {c} ) & pids=\"$pids $!\";" for c in commands)
    target.check(f"mkdir -p {out} && pids=''; {script} status=0; for p in $pids; do wait $p || status=1; done; "
                 f"exit $status", f"the parallel Cycles render ({workers} workers)")


def stitch(target, frames_dir: str, video: str, fps: int = STITCH_FPS) -> None:
    """frames_dir/frame_0001.png ... into one H.264 video, as render farms combine their frames."""
    target.check(f"ffmpeg -v error -nostdin -y -framerate {fps} -start_number 1 -i {frames_dir}/frame_%04d.png "
                 f"-c:v libx264 -pix_fmt yuv420p -crf 16 {video}", "stitching the frames with ffmpeg")


def render_manim(target, quality: str, media_dir: str) -> str:
    """The canonical Manim scene at `quality` (e.g. 480p15); returns the video's path."""
    scene = f"{sources(target)}/manim_scene.py"
    target.check(f"cd {sources(target)} && COLUMNS=250 {target.python} -m manim render {MANIM_QUALITIES[quality][0]} "
                 f"--media_dir {shlex.quote(media_dir)} -o canonical.mp4 {scene} CanonicalScene",
                 f"the Manim scene at {quality}")
    found = target.check(f"find {shlex.quote(media_dir)} -name canonical.mp4", "finding the Manim video")
    return found.stdout.split()[0]


def encode(target, source: str, encoder: str, out: str) -> None:
    target.check(f"ffmpeg -v error -nostdin -y -i {source} -c:v {encoder} {out}", f"encoding with {encoder}")


def make_source(target, out: str, size: str, frames: int, fps: int = 30) -> None:
    """A lossless synthetic source clip, so that only the encoder under test is timed."""
    target.check(f"mkdir -p $(dirname {out}) && ffmpeg -v error -nostdin -y -f lavfi -i testsrc2=size={size}:rate={fps} "
                 f"-frames:v {frames} -c:v ffv1 {out}", "making the encode source")
