"""The check tier (every check but the workloads, `-k "not workload"`, --allow-no-gpu, `-n auto`)
of one or more checkouts, run in turn REPEATS rounds: wall time (median and spread) and the
containers each run started. For comparing the run's machinery across commits, e.g. containers
grouped on xdist workers against one container per variant shared by every worker:

    git worktree add /tmp/before <commit>
    .venv/bin/python benchmarks/check_tier.py --repeats 5 /tmp/before=.venv/bin/python .=.venv/bin/python

Each argument is CHECKOUT=PYTHON, the Python (with its pytest) that runs that checkout's suites.
Run it alone on the machine, after `make images`.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rendergate.checks.timing import Series, timed  # noqa: E402


def check_tier(checkout: Path, python: str, reports: Path) -> int:
    """One run; returns how many containers it started."""
    done = subprocess.run(
        [python, "-m", "pytest", "suites", "-n", "auto", "-q", "-p", "no:randomly", "--allow-no-gpu", "-k", "not workload",
         f"--base-image={os.environ.get('BASE_IMAGE', 'rendergate/debian:bookworm')}", f"--reports-dir={reports}"],
        cwd=checkout, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{checkout}: the check tier failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return sum(json.loads(p.read_text())["containers_started"] for p in (reports / "verdicts").glob("*.json"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("runs", nargs="+", metavar="CHECKOUT=PYTHON")
    args = parser.parse_args()
    runs = [(Path(c).resolve(), os.path.abspath(p)) for c, _, p in (r.partition("=") for r in args.runs)]  # a venv's python is a link
    versions = {python: subprocess.run([python, "-m", "pytest", "--version"], capture_output=True, text=True)
                for _, python in runs}
    pytest_of = {python: (done.stdout + done.stderr).strip() for python, done in versions.items()}
    walls: dict[int, list[float]] = {i: [] for i in range(len(runs))}
    starts: dict[int, set[int]] = {i: set() for i in range(len(runs))}
    with tempfile.TemporaryDirectory(prefix="rendergate-bench-") as work:
        for i, (checkout, python) in enumerate(runs):  # warm: images, caches
            check_tier(checkout, python, Path(work) / f"warm-{i}")
        for n in range(args.repeats):
            for i, (checkout, python) in enumerate(runs):
                reports = Path(work) / f"{i}-{n}"
                walls[i].append(timed(lambda: starts[i].add(check_tier(checkout, python, reports))))
    for i, (checkout, python) in enumerate(runs):
        series = Series(tuple(walls[i]))
        print(f"{checkout} ({pytest_of[python]}): median {series.median:.1f} s, spread {series.spread:.0%} "
              f"over {args.repeats} runs ({', '.join(f'{w:.1f}' for w in walls[i])}); containers started "
              f"per run: {', '.join(map(str, sorted(starts[i])))}")


if __name__ == "__main__":
    main()
