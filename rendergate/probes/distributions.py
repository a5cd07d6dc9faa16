"""Which installed Python distributions own a module or a file (their dist-info's top_level.txt and
RECORD), and which of the files their RECORD names the image lacks: what advice about a Python
module or a wheel-bundled library is held to (rendergate/core/advice.py); for a file, also which of
them differ from RECORD's checksum; or, with --all, every distribution this Python sees (name,
version, the folder it is installed in: what the image's SBOM lists). Standard library only, any
Python 3 an image may have; prints {"owners": [{"dist": ..., "missing": [...], "damaged": [...]}]}
or {"distributions": [{"name": ..., "version": ..., "where": ...}]}."""
import base64
import glob
import hashlib
import os
import sys

from json_out import dumps


def distributions():
    for base in dict.fromkeys(p for p in sys.path if p and os.path.isdir(p)):
        # dist-info: what pip installs; egg-info (a folder, or a file of metadata alone): Debian's python3-* packages
        for info in sorted(glob.glob(os.path.join(base, "*.dist-info")) + glob.glob(os.path.join(base, "*.egg-info"))):
            name, _, version = os.path.basename(info).rsplit(".", 1)[0].partition("-")
            version = version.split("-")[0]
            metadata = info if os.path.isfile(info) else os.path.join(info, "METADATA" if info.endswith(".dist-info") else "PKG-INFO")
            try:
                with open(metadata, errors="replace") as f:
                    for line in f:
                        if not line.strip():
                            break  # the headers end; the description follows
                        if line.startswith("Name: ") and line[6:].strip():
                            name = line[6:].strip()
                        elif line.startswith("Version: ") and line[9:].strip():
                            version = line[9:].strip()
            except OSError:
                pass
            try:
                with open(os.path.join(info, "RECORD"), errors="replace") as f:
                    rows = [row.rsplit(",", 2) for row in f.read().splitlines() if row]
            except OSError:
                rows = []
            files = [row[0] for row in rows]
            sums = {row[0]: row[1] for row in rows if len(row) == 3 and row[1].startswith("sha256=")}
            try:
                with open(os.path.join(info, "top_level.txt"), errors="replace") as f:
                    tops = set(f.read().split())
            except OSError:
                tops = set()
            tops |= {f.split("/")[0][:-3] if f.endswith(".py") and "/" not in f else f.split("/")[0] for f in files}
            yield base, name, version, files, tops, sums


def differs(path, want):
    """Whether a file's content is not what RECORD's "sha256=<urlsafe base64>" says."""
    with open(path, "rb") as f:
        digest = base64.urlsafe_b64encode(hashlib.sha256(f.read()).digest()).rstrip(b"=").decode()
    return digest != want[len("sha256="):]


def owners(kind, wanted):
    found = []
    for base, name, _, files, tops, sums in distributions():
        if kind == "--module":
            top = wanted.split(".")[0]
            mine = [f for f in files if f.split("/")[0] in (top, top + ".py")] if top in tops else None
        elif wanted.startswith("/"):  # a path: a file, or a folder and what is in it
            mine = [f for f in files if os.path.normpath(os.path.join(base, f)) == wanted
                    or os.path.normpath(os.path.join(base, f)).startswith(wanted.rstrip("/") + "/")] or None
        else:
            mine = [f for f in files if os.path.basename(f) == wanted or os.path.basename(f).startswith(wanted + ".")] or None
        if mine is not None:
            gone = [f for f in mine if not os.path.exists(os.path.join(base, f))]
            damaged = [f for f in mine if kind == "--file" and f not in gone and f in sums and differs(os.path.join(base, f), sums[f])]
            found.append({"dist": name, "missing": gone[:5], "damaged": damaged[:5]})
    return found


def every_distribution():
    """Each distribution once: the first of a name on sys.path is the one Python imports."""
    seen, found = set(), []
    for base, name, version, _, _, _ in distributions():
        if name.lower() not in seen:
            seen.add(name.lower())
            found.append({"name": name, "version": version, "where": base})
    return found


if __name__ == "__main__":
    if sys.argv[1] == "--all":
        print(dumps({"distributions": every_distribution()}))
    else:
        print(dumps({"owners": owners(sys.argv[1], sys.argv[2])}))
