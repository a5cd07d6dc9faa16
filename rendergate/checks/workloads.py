"""Producing the canonical workloads' outputs inside a target. Judging them is rendergate.checks.media's
job, and timing them rendergate.checks.timing's: the suites put the three together.

The workload sources live in fixtures/workloads/ and are copied into the target once.
"""
from __future__ import annotations

import shlex
from pathlib import Path

from rendergate.core.assets import REFERENCES, WORKLOADS
from rendergate.engines.targets import Result

STITCH_FPS = 24
# Manim's qualities by the names users know them by: (render flag, width, height, frame rate).
MANIM_QUALITIES = {"480p15": ("-ql", 854, 480, 15), "720p30": ("-qm", 1280, 720, 30), "1080p60": ("-qh", 1920, 1080, 60),
                   "1440p60": ("-qp", 2560, 1440, 60), "2160p60": ("-qk", 3840, 2160, 60)}


def manim_reference(quality: str) -> Path:
    """The reference of the Manim scene's last frame at `quality`."""
    return REFERENCES / f"manim-{quality}-last.png"


def cycles_reference(size: str, samples: int) -> Path:
    """The reference of the Cycles scene's first frame on the CPU."""
    return REFERENCES / f"cycles-frame-{size}-{samples}spp.png"


def encoder_codec(encoder: str) -> str:
    """The codec an ffmpeg encoder writes: h264_nvenc -> h264, libx264 -> h264."""
    return "h264" if encoder in ("libx264", "libx264rgb") else encoder.split("_")[0]


def sources(target) -> str:
    """Where the workload sources are in the target (copied there on first use)."""
    if "workloads" not in target.memo:
        target.put(WORKLOADS, f"{target.workdir}/workloads")
        target.memo["workloads"] = f"{target.workdir}/workloads"
    return target.memo["workloads"]


def _cycles_command(target, out: str, first: int, last: int, total: int, size: str, samples: int,
                    threads: int, device: str, runner: str = "") -> str:
    # bpy logs to stdout, progress and errors alike: kept in a log, its error lines said on stderr (a
    # render that falls back, e.g. without colour management, exits 0 and says why only there).
    log = f"{out}/render-{first}-{last}.log"
    return (f"{{ {runner}{target.python} {sources(target)}/cycles_scene.py --frames {first}-{last} --total {total} "
            f"--size {size} --samples {samples} --threads {threads} --device {device} --out {out} > {log}; status=$?; "
            f"grep -E '\\b(ERROR|Error)\\b' {log} >&2; exit $status; }}")


def render_frames(target, out: str, total: int, size: str, samples: int, threads: int = 0,
                  device: str = "CPU", frames: tuple[int, int] | None = None) -> Result:
    """Frames of the canonical Cycles animation, one process, as out/frame_0001.png ..."""
    first, last = frames or (1, total)
    return target.check(f"mkdir -p {out} && " + _cycles_command(target, out, first, last, total, size, samples,
                                                               threads, device), "the Cycles render (Python with bpy)")


def chunks(total: int, workers: int) -> list[tuple[int, int]]:
    """Contiguous 1-based frame ranges, one per worker, as even as can be."""
    bounds = [round(total * i / workers) for i in range(workers + 1)]
    return [(bounds[i] + 1, bounds[i + 1]) for i in range(workers) if bounds[i + 1] > bounds[i]]


def render_frames_parallel(target, out: str, total: int, workers: int, size: str, samples: int) -> None:
    """The animation split over `workers` processes of one thread each (the render-farm pattern,
    one worker per core), in the chunks of chunks()."""
    target.check(f"mkdir -p {out}", "mkdir (making the output folder)")
    # Worker i pinned to core i (mod the cores there), as one container per core would be.
    _run_concurrently(target, [_cycles_command(target, out, first, last, total, size, samples, 1, "CPU",
                                               runner=f"taskset -c $(( {i} % $(nproc) )) ")
                               for i, (first, last) in enumerate(chunks(total, workers))],
                      f"the parallel Cycles render ({workers} Pythons with bpy)")


def _run_concurrently(target, commands: list[str], what: str) -> None:
    """Start every command at once in the target; fail unless all of them succeed."""
    jobs = " ".join(f"( {c} ) & pids=\"$pids $!\";" for c in commands)
    target.check(f"pids=''; {jobs} status=0; for p in $pids; do wait $p || status=1; done; exit $status", what)


def stitch(target, frames_dir: str, video: str, fps: int = STITCH_FPS) -> None:
    """frames_dir/frame_0001.png ... into one H.264 video, as render farms combine their frames."""
    target.check(f"ffmpeg -v error -nostdin -y -framerate {fps} -start_number 1 -i {frames_dir}/frame_%04d.png "
                 f"-c:v libx264 -pix_fmt yuv420p -crf 16 {video}", "stitching the frames with ffmpeg")


def _manim_command(target, quality: str, media_dir: str, scene: str, output: str) -> str:
    # --disable_caching: a repeated render must really render (timed runs), not reuse partial movies
    return (f"cd {sources(target)} && COLUMNS=250 {target.python} -m manim render {MANIM_QUALITIES[quality][0]} "
            f"--disable_caching --media_dir {shlex.quote(media_dir)} -o {output} manim_scene.py {scene}")


def _manim_video(target, media_dir: str, output: str) -> str:
    found = target.check(f"find {shlex.quote(media_dir)} -name {output} -not -path '*partial*'", "find (looking for the Manim video)")
    return found.stdout.split()[0]


def render_manim(target, quality: str, media_dir: str, scene: str = "CanonicalScene") -> str:
    """A scene of fixtures/workloads/manim_scene.py at `quality` (e.g. 480p15); returns the video's path."""
    output = f"{scene}.mp4"
    target.check(_manim_command(target, quality, media_dir, scene, output), f"manim render (the scene {scene} at {quality})")
    return _manim_video(target, media_dir, output)


def render_manim_parts_parallel(target, quality: str, media_dir: str, scenes: list[str], video: str) -> None:
    """Each scene (a part of the video) rendered by its own job at once, then concatenated with
    ffmpeg into `video`: the way a long Manim video is split across parallel jobs."""
    _run_concurrently(target, [_manim_command(target, quality, f"{media_dir}/{s}", s, f"{s}.mp4") + " >/dev/null 2>&1"
                               for s in scenes], f"manim render ({len(scenes)} parallel jobs)")
    parts = [f"file '{_manim_video(target, f'{media_dir}/{s}', f'{s}.mp4')}'" for s in scenes]
    target.check(f"printf '%s\\n' {' '.join(shlex.quote(p) for p in parts)} > {media_dir}/parts.txt && "
                 f"ffmpeg -v error -nostdin -y -f concat -safe 0 -i {media_dir}/parts.txt -c copy {video}",
                 "concatenating the parts with ffmpeg")


def encode(target, source: str, encoder: str, out: str) -> None:
    target.check(f"ffmpeg -v error -nostdin -y -i {source} -c:v {encoder} {out}", f"ffmpeg encoding with {encoder}")


def make_source(target, out: str, size: str, frames: int, fps: int = 30) -> None:
    """A lossless synthetic source clip, so that only the encoder under test is timed."""
    target.check(f"mkdir -p $(dirname {out}) && ffmpeg -v error -nostdin -y -f lavfi -i testsrc2=size={size}:rate={fps} "
                 f"-frames:v {frames} -c:v ffv1 {out}", "ffmpeg (making the encode source)")
