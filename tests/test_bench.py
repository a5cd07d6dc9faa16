"""`make bench` cannot rot: its quick mode runs every part once, small, and writes its figures.
What they are is the benchmark's to say, not this test's (no time is asserted here)."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_quick_runs_every_part_and_writes_its_figures(tmp_path):
    done = subprocess.run([sys.executable, "benchmarks/bench.py", "--quick", f"--out={tmp_path}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads((tmp_path / "bench.json").read_text())
    tier = figures["check_tier"]["current"]
    assert tier["auto_s"]["samples_s"] and tier["serial_s"]["samples_s"] and tier["speedup_auto"] > 0
    assert figures["collection"]["current"]["cpu_s"]["samples_s"]
    measured = [row for row in figures["checks"] if row["raw_s"] is not None]
    assert measured and all(row["ratio"] >= 0 for row in measured), figures["checks"]  # 0.0: a check that found its work done
    assert figures["workloads"]["wall_s"]["samples_s"]
    assert figures["machine"]["cpus"] and figures["date"] and figures["commit"]
    table = (tmp_path / "bench.md").read_text()
    assert table.startswith("rendergate bench") and "| check tier, -n auto |" in table
