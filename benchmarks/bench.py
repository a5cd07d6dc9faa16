"""`make bench`: where users wait, measured side by side in one run on this machine, and written
down (JSON and a table) with the date, the machine and the commit:

- the check tier (every check but the workloads, `-k "not workload"`, --allow-no-gpu) under
  `-n auto` and `-n 0`, and what `-n auto` gains;
- collection, per process (xdist's controller and every worker each pay it);
- each check's call time (`-n 0`, from JUnit; its setup, which may start its container, aside),
  beside the raw commands it runs, typed by hand in
  the same image (benchmarks/raw_commands.py): no check should take more than 1.3x them;
- the check tier on an engine reached over ssh (a second engine on this machine:
  tests/second_engine) beside the local engine, per variant, paired: what the transport costs;
- the smoke workloads; `make validate ALLOW_NO_GPU=1` with the images built, with and without
  recording the images' SBOMs (--no-sbom), paired; what recording one image's SBOM takes;
- with `--fresh`, the main job as on a fresh machine (fresh_machine(): no venv, every image built
  from nothing; it takes minutes and rebuilds the images, so only when asked).

Against a baseline commit (`--baseline REV`: its own checkout and venv under .bench/, set up by
its own Makefile, its runs interleaved with this checkout's) or, without one, beside the figures
recorded last (benchmarks/recorded.json; `--record` replaces them). `--quick` runs every part
once, small (one variant, one round, no baseline, no `make validate`): CI's proof that it runs;
`--only-remote` measures the remote engine alone (`make bench REMOTE=1`), beside the rest recorded.
Run it alone on the machine, after `make images`.
"""
from __future__ import annotations

import argparse
import re
import datetime
import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from raw_commands import RAW, measure as measure_raw  # noqa: E402  (beside this file)

from rendergate.checks.timing import Series  # noqa: E402
from rendergate.core.manifest import load_variants  # noqa: E402

RECORDED = ROOT / "benchmarks" / "recorded.json"
ALLOWED_OVER_RAW = 1.3  # issue 26: no check slower than 1.3x the raw commands it runs
BASE_IMAGE = os.environ.get("BASE_IMAGE", "rendergate/debian:bookworm")


@dataclass(frozen=True)
class Checkout:
    """A tree of rendergate whose suites are measured, and the Python (its venv) that runs them."""
    name: str
    root: Path
    python: str

    @cached_property
    def main_job_flags(self) -> list[str]:
        """The pytest flags its own Makefile gives the main job besides the run's (unused plugins left out, say)."""
        said = subprocess.run(["make", "-s", "--no-print-directory", "-C", str(self.root),
                               "--eval", "rendergate-bench-flags: ; @echo $(UNUSED_PLUGINS)", "rendergate-bench-flags"],
                              capture_output=True, text=True)
        return said.stdout.split()


@dataclass(frozen=True)
class Run:
    wall: float
    cpu: float  # user + system seconds of the pytest processes (not the containers' own)
    busy: float  # CPU seconds the whole machine was busy (the containers and the engine too)
    times: dict[str, float]  # each test that ran (not skipped) by JUnit's classname::name: its seconds


def _children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def _machine_busy() -> float:
    """CPU seconds this machine has been busy since boot, every process's (/proc/stat: all but idle and iowait)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def timed_run(command: list[str], cwd: Path, junit: Path | None = None, env: dict | None = None) -> Run:
    cpu, busy, started = _children_cpu(), _machine_busy(), time.monotonic()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"bench: {' '.join(command)} (in {cwd}) exited {done.returncode}:\n"
                         f"{done.stdout[-3000:]}{done.stderr[-2000:]}")
    return Run(wall, _children_cpu() - cpu, _machine_busy() - busy, junit_times(junit) if junit else {})


def junit_times(path: Path) -> dict[str, float]:
    times = {}
    for case in ET.parse(path).iter("testcase"):
        if case.find("skipped") is None:
            times[f"{case.get('classname')}::{case.get('name')}"] = float(case.get("time", 0))
    return times


def suites(checkout: Checkout, work: Path, workers: str, *selection: str, env: dict | None = None) -> Run:
    """One run of the checkout's suites with the main job's flags, --allow-no-gpu (`env`: added to this process's)."""
    reports = Path(tempfile.mkdtemp(dir=work))
    junit = reports / "junit.xml"
    # JUnit's time of a check is its call's: the setup of a run's first check of a variant starts its
    # container, which no raw command pays (they run in a container already started).
    return timed_run([checkout.python, "-m", "pytest", "suites", "-q", "-n", workers, *checkout.main_job_flags,
                      "--allow-no-gpu", f"--base-image={BASE_IMAGE}", f"--reports-dir={reports}",
                      f"--junitxml={junit}", "-o", "junit_duration_report=call", *selection], checkout.root, junit, env)


def collection(checkout: Checkout, work: Path) -> Run:
    return timed_run([checkout.python, "-m", "pytest", "suites", "--collect-only", "-q", *checkout.main_job_flags,
                      "--allow-no-gpu", f"--reports-dir={work / 'collect'}"], checkout.root)


FRESH_BASE = "rendergate/bench-fresh-base:bookworm"  # a base tag of its own: every variant builds from nothing


def _image_id(ref: str) -> str | None:
    found = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", ref], capture_output=True, text=True)
    return found.stdout.strip() if found.returncode == 0 else None


def fresh_machine(work: Path) -> dict:
    """`make validate ALLOW_NO_GPU=1` as on a fresh machine, as near as this one allows: a clone of
    this commit (what is not committed is not in it) with no venv, pip's cache off, and a base image
    made anew by debootstrap under another tag, so that every variant builds from nothing, its
    packages downloaded again. The Docker engine is installed already. The variants' own tags are
    put back afterwards, whatever ends the run, and the images it built removed."""
    refs = sorted({v.image_ref for v in load_variants(ROOT / "images").values() if v.needs_image})
    before = {ref: _image_id(ref) for ref in refs}
    clone = work / "fresh"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    started = time.monotonic()
    try:
        done = subprocess.run(["make", "-s", "validate", "ALLOW_NO_GPU=1", f"BASE_IMAGE={FRESH_BASE}"], cwd=clone,
                              env={**os.environ, "PIP_NO_CACHE_DIR": "1"}, capture_output=True, text=True)
        wall = time.monotonic() - started
    finally:
        for ref, image in before.items():
            built = _image_id(ref)
            if image:
                subprocess.run(["docker", "tag", image, ref], capture_output=True)
            if built and built != image:
                subprocess.run(["docker", "rmi", "-f", built], capture_output=True)
        subprocess.run(["docker", "rmi", "-f", FRESH_BASE], capture_output=True)
    if done.returncode != 0:
        raise SystemExit(f"bench: make validate in a fresh clone exited {done.returncode}:\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
    said = done.stdout + done.stderr

    def seconds(pattern: str) -> float | None:
        m = re.search(pattern, said, re.M)
        return None if m is None else 60 * float(m.group(1) or 0) + float(m.group(2))
    return {"wall_s": round(wall, 1), "base_s": seconds(r"base image \S+ made from \S+ in ()(\d+) s"),
            "builds_s": seconds(r"\d+ images built in (?:(\d+) min )?([\d.]+) s"),
            "suites_s": seconds(r"=+ .* in ()([\d.]+)s"), "date": datetime.date.today().isoformat(), "commit": subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True, text=True).stdout.strip()}


def baseline_checkout(rev: str) -> Checkout:
    """REV's tree under .bench/REV with its own venv, made by its own `make setup` (kept for next time)."""
    sha = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    root = ROOT / ".bench" / sha
    if not (root / ".venv" / ".installed").exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", sha], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
        subprocess.run(["make", "-s", "-C", str(root), "setup"], check=True)
    return Checkout(sha, root, str(root / ".venv" / "bin" / "python"))


def series(samples: list[float]) -> dict:
    return Series(tuple(samples)).as_dict() if samples else {}


def medians(runs: list[Run]) -> dict[str, float]:
    names = {name for run in runs for name in run.times}
    return {name: round(Series(tuple(r.times[name] for r in runs if name in r.times)).median, 3) for name in sorted(names)}


def check_tier(checkouts: list[Checkout], work: Path, repeats: int, variants: list[str]) -> dict:
    """Each checkout under -n auto and -n 0, interleaved round by round after one warm-up each."""
    selection = ["-k", "not workload", *(f"--variant={v}" for v in variants)]
    runs: dict[tuple[str, str], list[Run]] = {(c.name, n): [] for c in checkouts for n in ("auto", "0")}
    for checkout in checkouts:
        suites(checkout, work, "auto", *selection)  # warm: images, page cache, the order's history
    for _ in range(repeats):
        for checkout in checkouts:
            for workers in ("auto", "0"):
                runs[(checkout.name, workers)].append(suites(checkout, work, workers, *selection))
    figures = {}
    for checkout in checkouts:
        auto, serial = runs[(checkout.name, "auto")], runs[(checkout.name, "0")]
        figures[checkout.name] = {
            "auto_s": series([r.wall for r in auto]), "serial_s": series([r.wall for r in serial]),
            "auto_cpu_s": series([r.cpu for r in auto]),
            # What the tier's work costs the machine, and the least -n auto could take on its cores.
            "auto_busy_s": series([r.busy for r in auto]),
            "auto_floor_s": series([r.busy / (os.cpu_count() or 1) for r in auto]),
            "speedup_auto": round(Series(tuple(r.wall for r in serial)).median / Series(tuple(r.wall for r in auto)).median, 2),
            "checks_s": medians(serial)}
    return figures


def remote_engine(checkout: Checkout, work: Path, repeats: int, variants: list[str]) -> dict:
    """Each variant's check tier (-n auto) on a second engine reached over ssh and on the local
    engine, interleaved after a warm-up each, with its image moved in and named alike on both (no
    side builds it). Both engines share this machine's CPUs: what differs is the transport (ssh,
    `docker system dial-stdio`) and the engine's host facts read through a probe container."""
    sys.path.insert(0, str(ROOT / "tests"))
    from second_engine.engine import build_image, launch

    from rendergate.engines.docker_engine import Engine

    build_image(base_image=BASE_IMAGE)
    local, figures = Engine(), {}
    with launch("bench-remote", parent=work) as remote:
        for variant in variants:
            ref, loaded = f"rendergate/{variant}:dev", f"rendergate-bench/{variant}:loaded"
            remote.load(ref)
            local.client.images.get(ref).tag(loaded)
            there = remote.client()
            there.images.get(ref).tag(loaded)
            there.close()
            selection = ["-k", "not workload", f"--variant={variant}", f"--image={loaded}"]
            sides = {"local": {}, "ssh": remote.ssh_env()}
            runs: dict[str, list[float]] = {side: [] for side in sides}
            for env in sides.values():
                suites(checkout, work, "auto", *selection, env=env)  # warm: the order's history, the page cache
            for _ in range(repeats):
                for side, env in sides.items():
                    runs[side].append(suites(checkout, work, "auto", *selection, env=env).wall)
            local.client.images.remove(loaded)
            figures[variant] = {"local_s": series(runs["local"]), "ssh_s": series(runs["ssh"]),
                                "ssh_over_local": series([a / b for a, b in zip(runs["ssh"], runs["local"])])}
    return figures


def sbom_recording(images: dict[str, str], repeats: int) -> dict[str, dict]:
    """What recording an image's SBOM takes (rendergate.core.contents: the listing in its container,
    the engine's config and history, the CycloneDX file written), per image, in a container of its own."""
    from rendergate.core import contents
    from rendergate.core.manifest import load_variants as variants_of
    from rendergate.engines.docker import DockerTarget
    from rendergate.engines.docker_engine import Engine

    engine, known, found = Engine(), variants_of(ROOT / "images"), {}
    with tempfile.TemporaryDirectory(prefix="rendergate-bench-sbom-") as folder:
        for name, ref in images.items():
            target = DockerTarget.start(engine, known[name], ref, "bench", "bench", Path(folder), 300)
            try:
                samples = []
                for _ in range(repeats):
                    started = time.monotonic()
                    contents.write(Path(folder) / f"{name}.cdx.json", contents.record(target))
                    samples.append(time.monotonic() - started)
            finally:
                engine.remove(target.container.id)
            found[name] = series(samples)
    return found


def check_vs_raw(checks: dict[str, float], raw: dict[str, Series]) -> list[dict]:
    """Each check (by its JUnit name) beside its raw commands' median, where they were measured."""
    rows = []
    for name, seconds in checks.items():
        function = name.split("::")[-1].split("[")[0]
        variant = name.split("[", 1)[1].split("@")[0] if "[" in name else ""
        measured = raw.get(f"{function}[{variant}]")
        rows.append({"check": name.split("::", 1)[-1], "check_s": seconds,
                     "raw_s": round(measured.median, 3) if measured else None,
                     "ratio": round(seconds / measured.median, 2) if measured and measured.median else None})
    return sorted(rows, key=lambda r: -r["check_s"])


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"host": socket.gethostname(), "cpus": os.cpu_count(), "cpu": model,
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "os": platform.platform(), "python": platform.python_version(),
            "bytecode_cache": not sys.flags.dont_write_bytecode}


def table(figures: dict, against: dict | None) -> str:
    """The short table: this run's figures, and the baseline's or the recorded ones beside them."""
    lines = [f"rendergate bench, {figures['date']}, {figures['machine']['cpus']} CPUs ({figures['machine']['cpu']}), "
             f"commit {figures['commit']}", "", "| figure | this run | beside |", "|---|---|---|"]
    current = figures["check_tier"]["current"]
    other = next((v for k, v in figures["check_tier"].items() if k != "current"), None) or \
        (against or {}).get("check_tier", {}).get("current")
    beside = f"{figures['baseline']}" if figures.get("baseline") else "recorded"

    def cell(part: dict | None, key: str, unit: str = " s") -> str:
        if not part or key not in part or part[key] in ({}, None):
            return "—"
        value = part[key]
        return f"{value['median_s']:.1f}{unit} (spread {value['spread']:.0%})" if isinstance(value, dict) else f"{value}x"
    lines.append(f"| check tier, -n auto | {cell(current, 'auto_s')} | {cell(other, 'auto_s')} ({beside}) |")
    lines.append(f"| check tier, -n 0 | {cell(current, 'serial_s')} | {cell(other, 'serial_s')} |")
    lines.append(f"| -n auto over -n 0 | {cell(current, 'speedup_auto')} | {cell(other, 'speedup_auto')} |")
    lines.append(f"| check tier, -n auto: CPU seconds the machine was busy | {cell(current, 'auto_busy_s')} | "
                 f"{cell(other, 'auto_busy_s')} |")
    lines.append(f"| check tier, -n auto: at best on {figures['machine']['cpus']} CPUs (busy / CPUs) | "
                 f"{cell(current, 'auto_floor_s')} | {cell(other, 'auto_floor_s')} |")
    collect = figures["collection"]
    other_collect = next((v for k, v in collect.items() if k != "current"), None) or (against or {}).get("collection", {}).get("current")
    lines.append(f"| collection, one process (wall) | {cell(collect['current'], 'wall_s')} | {cell(other_collect, 'wall_s')} |")
    lines.append(f"| collection, one process (CPU) | {cell(collect['current'], 'cpu_s')} | {cell(other_collect, 'cpu_s')} |")
    if figures.get("validate"):
        lines.append(f"| make validate ALLOW_NO_GPU=1, warm | {cell(figures, 'validate')} | "
                     f"{cell(against, 'validate') if against else '—'} |")
    if figures.get("validate_no_sbom"):
        lines.append(f"| make validate ALLOW_NO_GPU=1, warm, recording no SBOM (--no-sbom) | "
                     f"{cell(figures, 'validate_no_sbom')} | — |")
        share = figures["sbom_share"]
        lines.append(f"| what recording the SBOMs adds to make validate (median of the pairs) | {share['median_s']:+.1%} "
                     f"(pairs {min(share['samples_s']):+.1%} to {max(share['samples_s']):+.1%}) | — |")
    when = f" ({figures['remote_engine_date']}, commit {figures['remote_engine_commit']})" \
        if figures.get("remote_engine_date") else ""  # measured alone (--only-remote), beside recorded figures
    for name, part in (figures.get("remote_engine") or {}).items():
        ratio = part["ssh_over_local"]
        lines.append(f"| check tier of {name}, -n auto: local engine / engine over ssh{when} | {cell(part, 'local_s')} / "
                     f"{cell(part, 'ssh_s')}: {ratio['median_s']:.2f}x (pairs {min(ratio['samples_s']):.2f}x to "
                     f"{max(ratio['samples_s']):.2f}x) | — |")
    for name, part in (figures.get("sbom_record_s") or {}).items():
        lines.append(f"| recording the SBOM of {name} | {cell({'x': part}, 'x')} | — |")
    if figures.get("workloads"):
        lines.append(f"| smoke workloads, -n auto | {cell(figures['workloads'], 'wall_s')} | "
                     f"{cell((against or {}).get('workloads'), 'wall_s')} |")
    fresh = figures.get("fresh") or (against or {}).get("fresh") or (
        json.loads(RECORDED.read_text()).get("fresh") if RECORDED.exists() else None)
    if fresh:
        parts = ", ".join(f"{name} {fresh[key]:.0f} s" for name, key in (("base", "base_s"), ("builds", "builds_s"),
                                                                           ("suites", "suites_s")) if fresh.get(key))
        when = "" if figures.get("fresh") else f" (recorded {fresh['date']}, commit {fresh['commit']})"
        lines.append(f"| make validate ALLOW_NO_GPU=1, a fresh machine ({parts}) | {fresh['wall_s']:.0f} s{when} | — |")
    lines += ["", f"| check (-n 0) | check | raw commands | ratio (at most {ALLOWED_OVER_RAW}) |", "|---|---|---|---|"]
    for row in figures["checks"]:
        if row["raw_s"] is not None:
            lines.append(f"| {row['check']} | {row['check_s']:.2f} s | {row['raw_s']:.2f} s | {row['ratio']}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--baseline", metavar="REV", help="a commit run side by side (e.g. a7967c9)")
    parser.add_argument("--quick", action="store_true", help="every part once, small: CI's proof that it runs")
    parser.add_argument("--fresh", action="store_true", help="also the main job as on a fresh machine (minutes; "
                                                                  "rebuilds every image from nothing)")
    parser.add_argument("--only-remote", action="store_true", help="measure only the check tier through an ssh "
                        "engine beside the local one (the other figures: the recorded ones)")
    parser.add_argument("--record", action="store_true", help=f"write the figures to {RECORDED.relative_to(ROOT)}")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench", help="where bench.json and bench.md go")
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats
    variants = ["xorg-glx"] if args.quick else []
    current = Checkout("current", ROOT, sys.executable)
    checkouts = [current] + ([baseline_checkout(args.baseline)] if args.baseline and not args.quick else [])
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    figures: dict = {"date": datetime.date.today().isoformat(), "machine": machine(), "commit": commit,
                     "baseline": checkouts[1].name if len(checkouts) > 1 else None, "quick": args.quick}
    with tempfile.TemporaryDirectory(prefix="rendergate-bench-") as scratch:
        work = Path(scratch)
        if args.only_remote:
            recorded = json.loads(RECORDED.read_text())
            remote = remote_engine(current, work, repeats, variants or ["xorg-glx", "manim"])
            figures = {**recorded, "remote_engine": remote, "remote_engine_date": figures["date"],
                       "remote_engine_commit": commit}
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "bench.json").write_text(json.dumps(figures, indent=1))
            print(table(figures, None))
            if args.record:
                RECORDED.write_text(json.dumps(figures, indent=1) + "\n")
            return
        collected = {c.name: [collection(c, work) for _ in range(max(repeats, 3))] for c in checkouts}
        figures["collection"] = {name: {"wall_s": series([r.wall for r in runs]), "cpu_s": series([r.cpu for r in runs])}
                                 for name, runs in collected.items()}
        figures["check_tier"] = check_tier(checkouts, work, repeats, variants)
        images = {name: f"rendergate/{name}:dev" for name in (variants or [r.variant for r in RAW.values()])}
        raw = measure_raw(images, repeats=max(repeats, 3))
        figures["checks"] = check_vs_raw(figures["check_tier"]["current"].pop("checks_s"), raw)
        for checkout in checkouts[1:]:
            figures["check_tier"][checkout.name].pop("checks_s")
        workloads = [suites(current, work, "auto", "-k", "workload", *(f"--variant={v}" for v in variants))
                     for _ in range(1 if args.quick else 2)]
        figures["workloads"] = {"wall_s": series([r.wall for r in workloads]), "checks_s": medians(workloads)}
        figures["sbom_record_s"] = sbom_recording(images, max(repeats, 3))
        figures["remote_engine"] = remote_engine(current, work, repeats, variants or ["xorg-glx", "manim"])
        if not args.quick:
            runs: dict[str, list[float]] = {"validate": [], "validate_no_sbom": []}
            for _ in range(3):  # pairs, interleaved: what recording the SBOMs adds to the main job
                for name, more in (("validate", ""), ("validate_no_sbom", "--no-sbom")):
                    reports = Path(tempfile.mkdtemp(dir=work))
                    runs[name].append(timed_run(["make", "-s", "validate", "ALLOW_NO_GPU=1", f"REPORTS_DIR={reports}",
                                                 f"PROMOTED={reports}/promoted", f"PYTEST_ARGS={more}"], ROOT).wall)
            figures |= {name: series(samples) for name, samples in runs.items()}
            figures["sbom_share"] = series([a / b - 1 for a, b in zip(runs["validate"], runs["validate_no_sbom"])])
        if args.fresh and not args.quick:
            figures["fresh"] = fresh_machine(work)
    against = None if args.baseline or not RECORDED.exists() else json.loads(RECORDED.read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(figures, indent=1))
    (args.out / "bench.md").write_text(table(figures, against) + "\n")
    print(table(figures, against))
    print(f"\nbench: figures in {args.out / 'bench.json'} and {args.out / 'bench.md'}")
    if args.record and not args.quick:
        recorded = json.loads(RECORDED.read_text()) if RECORDED.exists() else {}
        kept = {"fresh": recorded["fresh"]} if "fresh" in recorded and "fresh" not in figures else {}
        RECORDED.write_text(json.dumps({**figures, **kept}, indent=1) + "\n")


if __name__ == "__main__":
    main()
