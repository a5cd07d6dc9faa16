"""`rendergate merge PATH ...`: merge verdicts of several hosts into one matrix report."""
from __future__ import annotations

import json
from pathlib import Path

from rendergate.commands.common import say
from rendergate.core import comparison, times
from rendergate.core import verdict as verdicts
from rendergate.core.jsonfile import write_whole
from rendergate.core.platforms import Platform
from rendergate.pages import merged_html
from rendergate.release.review import Reviewer


def add(sub) -> None:
    command = sub.add_parser("merge", help="merge verdicts (files, or reports folders) of several hosts into one report")
    command.add_argument("paths", nargs="+")
    command.add_argument("--out", default="reports/merged.html")
    command.add_argument("--promoted-dir", help="the last promoted verdicts and SBOMs, each verdict reviewed against its "
                                                "variant's (default promoted/ in --reports-dir)")


def run(args) -> int:
    files = []
    for path in map(Path, args.paths):
        if path.is_dir():
            found = sorted((path / "verdicts").glob("*.json")) or sorted(path.glob("*.json"))
            if not found:
                raise verdicts.VerdictError(f"{path}: no verdicts in it (nor in {path / 'verdicts'})")
            files += found
        else:
            files.append(path)
    loaded, seen, where = [], {}, {}
    for f in files:
        v = verdicts.load(f)  # judged again: never the state a verdict says of itself
        where[id(v)] = f
        key = (v.variant, v.host.get("gpu_type"), v.platform or Platform.NATIVE, v.host.get("host"), v.host.get("engine_id"))
        if key in seen:
            raise verdicts.VerdictError(f"{f} and {seen[key]} are both about {key[0]} on {key[1]} ({key[2]}) on host "
                                        f"{key[3]}: merge one verdict per host, GPU type and platform")
        seen[key] = f
        loaded.append(v)
    out = Path(args.out)
    if out.is_dir() or out.suffix != ".html":
        raise verdicts.VerdictError(f"--out {out}: name an .html file to write (its .json goes beside it)")
    try:
        reviewer = Reviewer(Path(args.promoted_dir or Path(args.reports_dir) / "promoted"), Path(args.reports_dir) / "mutate")
        write_whole(out, merged_html(loaded, lambda v: reviewer(v, where[id(v)])))
        write_whole(out.with_suffix(".json"), json.dumps({"merged": times.now_iso(), "verdicts": [v.as_json() for v in loaded]}, indent=1))
    except OSError as e:
        raise verdicts.VerdictError(f"--out {out}: cannot be written ({e.strerror})") from None
    say(f"merged {len(loaded)} verdicts from {len(files)} files into {out} and {out.with_suffix('.json')}")
    for line in comparison.platform_differences(loaded):
        say(line)
    return 0
