"""What the HTML report costs, measured on real runs of the suites:

1. overhead: the suites on the built images (`-m "not timed"`, --allow-no-gpu) with and without
   --html/--junitxml, interleaved, REPEATS pairs; the report's share of the wall time.
2. scale: a run of several hundred checks (VARIANTS copies of a host-like manifest, checked on
   this machine: real commands, mostly quick failures with their transcripts) with and without
   the report, and how long chromium takes to open that report.

    .venv/bin/python benchmarks/report.py [--repeats 3] [--variants 20]

Run it alone on the machine (after `make images`); it prints medians and spreads.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rendergate.checks.timing import Series  # noqa: E402


def timed(action) -> float:
    """The wall seconds `action()` took."""
    started = time.monotonic()
    action()
    return time.monotonic() - started

BASE = [sys.executable, "-m", "pytest", "suites", "-q", "-p", "no:randomly", "--allow-no-gpu",
        f"--base-image={os.environ.get('BASE_IMAGE', 'rendergate/debian:bookworm')}"]


def suite_run(reports: Path, with_report: bool, *args: str) -> None:
    report = [f"--html={reports / 'report.html'}", "--self-contained-html", f"--junitxml={reports / 'junit.xml'}"]
    subprocess.run([*BASE, f"--reports-dir={reports}", *(report if with_report else []), *args],
                   cwd=ROOT, capture_output=True, check=False)


def overhead(repeats: int, work: Path) -> None:
    args = ("-n", "auto", "-m", "not timed")
    suite_run(work / "warm", True, *args)  # images and caches warm
    without, with_report = [], []
    for i in range(repeats):
        without.append(timed(lambda: suite_run(work / f"off{i}", False, *args)))
        with_report.append(timed(lambda: suite_run(work / f"on{i}", True, *args)))
    base, cand = Series(tuple(without)), Series(tuple(with_report))
    shares = [w / b - 1 for b, w in zip(without, with_report)]
    print(f"overhead: suites without report {base.median:.1f} s (spread {base.spread:.0%}), with report "
          f"{cand.median:.1f} s (spread {cand.spread:.0%}); paired overhead {', '.join(f'{s:+.1%}' for s in shares)} "
          f"(median {sorted(shares)[len(shares) // 2]:+.1%})")


def scale(variants: int, work: Path) -> None:
    images = work / "many"
    for n in range(variants):
        folder = images / f"host-{n:02d}"
        folder.mkdir(parents=True)
        (folder / "manifest.toml").write_text(
            'description = "host-like, for the report benchmark"\n[requirements]\ngpu = true\nmanimpango = true\n'
            'latex = true\nnvenc = ["h264_nvenc", "hevc_nvenc"]\ncycles_devices = ["OPTIX", "CUDA"]\nxorg = true\n'
            'glx_renderer = "nvidia"\nvnc = true\n')
    args = (f"--images-dir={images}", "-n", "auto", "-m", "not timed")
    off = timed(lambda: suite_run(work / "scale-off", False, *args))
    on = timed(lambda: suite_run(work / "scale-on", True, *args))
    report = work / "scale-on" / "report.html"
    tests = sum(len(json.loads(p.read_text())["checks"]) for p in (work / "scale-on" / "verdicts").glob("*.json"))
    print(f"scale: {variants} variants, {tests} tests: without report {off:.1f} s, with report {on:.1f} s "
          f"({on / off - 1:+.1%}); report {report.stat().st_size / 1e6:.1f} MB")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu"):
        options.add_argument(arg)
    browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    loads = []
    for _ in range(3):
        started = time.monotonic()
        browser.get(report.as_uri())
        while browser.execute_script("return document.querySelectorAll('#results-table tbody').length") < tests:
            time.sleep(0.05)
        loads.append(time.monotonic() - started)
        browser.get("about:blank")
    browser.quit()
    series = Series(tuple(loads))
    print(f"scale: chromium shows all {tests} rows after {series.median:.2f} s (median of 3, spread {series.spread:.0%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", type=int, default=20)
    parser.add_argument("--only", choices=("overhead", "scale"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rendergate-bench-") as work:
        if args.only != "scale":
            overhead(args.repeats, Path(work))
        if args.only != "overhead":
            scale(args.variants, Path(work))


if __name__ == "__main__":
    main()
