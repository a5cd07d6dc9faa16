"""Which installed Python distributions own a module or a file (their dist-info's top_level.txt and
RECORD), and which of the files their RECORD names the image lacks: what advice about a Python
module or a wheel-bundled library is held to (rendergate/core/advice.py); for a file, also which of
them differ from RECORD's checksum. Standard library only, any Python 3 an image may have; prints
{"owners": [{"dist": ..., "missing": [...], "damaged": [...]}]}."""
import base64
import glob
import hashlib
import json
import os
import sys


def distributions():
    for base in dict.fromkeys(p for p in sys.path if p and os.path.isdir(p)):
        for info in sorted(glob.glob(os.path.join(base, "*.dist-info"))):
            name = os.path.basename(info)[:-len(".dist-info")].rsplit("-", 1)[0]
            try:
                with open(os.path.join(info, "METADATA"), errors="replace") as f:
                    name = next((line[6:].strip() for line in f if line.startswith("Name: ")), name)
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
            yield base, name, files, tops, sums


def differs(path, want):
    """Whether a file's content is not what RECORD's "sha256=<urlsafe base64>" says."""
    with open(path, "rb") as f:
        digest = base64.urlsafe_b64encode(hashlib.sha256(f.read()).digest()).rstrip(b"=").decode()
    return digest != want[len("sha256="):]


def owners(kind, wanted):
    found = []
    for base, name, files, tops, sums in distributions():
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


if __name__ == "__main__":
    print(json.dumps({"owners": owners(sys.argv[1], sys.argv[2])}))
