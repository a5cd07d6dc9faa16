"""Which files of the image's installed Debian packages and Python distributions are not their
own: missing, or not what their package's checksum says (dpkg's *.md5sums; a wheel's RECORD).
What dpkg was told not to install (path-exclude in /etc/dpkg/dpkg.cfg.d, a lean image's way) is
not expected; conffiles (dpkg's status) are to be there, their content the admin's to change. Standard library
only, any Python 3 an image may have; `--missing-allowed REGEX`: files that may be missing (the
documentation images leave out, rm -rf /usr/share/doc/*); prints {"checked": N, "count": M, "faults": [{"path",
"owner", "by": "dpkg"|"conffile"|"wheel", "state": "missing"|"changed"|"not a file"|"not executable"}, ...]} (the first 20
faults)."""
import base64
import fnmatch
import glob
import hashlib
import os
import re
import stat
import sys

from json_out import dumps  # noqa: E402  (beside it: any Python 3, python3-minimal's too)

MOST = 20


def excluded_by_dpkg():
    """dpkg's path-exclude and path-include filters, in the order it applies them (the last wins)."""
    rules = []
    for config in sorted(glob.glob("/etc/dpkg/dpkg.cfg.d/*")) + ["/etc/dpkg/dpkg.cfg"]:
        try:
            with open(config, errors="replace") as f:
                for line in f:
                    word, _, pattern = line.strip().partition("=")
                    if word in ("path-exclude", "path-include") and pattern:
                        rules.append((word == "path-exclude", pattern.strip()))
        except OSError:
            pass

    def excluded(path):
        verdict = False
        for exclude, pattern in rules:
            if fnmatch.fnmatchcase(path, pattern):
                verdict = exclude
        return verdict
    return excluded


def state(path, digest, algorithm):
    """None when the file is its package's own, else "missing" or "changed" (digest None: only
    whether it is there)."""
    if digest is None:
        return None if os.path.lexists(path) else "missing"
    try:
        got = digest_of(path, algorithm)
    except FileNotFoundError:
        return "missing"
    except NotAFile:
        return "not a file"
    except OSError:  # a file the probe's user may not read: not this probe's to judge
        return None
    return None if got == digest else "changed"


class NotAFile(Exception):
    """A folder, a socket, a FIFO or a device where the package has a file."""


BUFFER = bytearray(1 << 20)  # one buffer read into, not a new bytes object a block
DIGESTS = {}  # (device, inode, algorithm): digest; a file under several names (Mesa's hard-linked drivers) is read once


def digest_of(path, algorithm):
    """The file's digest as its list writes it: md5 in hex (dpkg), sha256 in urlsafe base64 (RECORD).
    Only a regular file (a link to one too) is read: open() would wait forever on a FIFO."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise NotAFile(path)
    key = (st.st_dev, st.st_ino, algorithm)
    if key not in DIGESTS:
        with open(path, "rb", buffering=0) as f:
            h, view = hashlib.new(algorithm), memoryview(BUFFER)
            read = f.readinto(BUFFER)
            while read:
                h.update(view[:read])
                read = f.readinto(BUFFER)
            DIGESTS[key] = h.hexdigest() if algorithm == "md5" else base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode()
    return DIGESTS[key]


def dpkg_files():
    excluded = excluded_by_dpkg()
    for sums in sorted(glob.glob("/var/lib/dpkg/info/*.md5sums")):
        package = os.path.basename(sums)[:-len(".md5sums")].split(":")[0]
        with open(sums, errors="replace") as f:
            for line in f:
                digest, _, path = line.rstrip("\n").partition("  ")
                if path and not excluded("/" + path):
                    yield "/" + path, package, "dpkg", digest, "md5"


def conffiles():
    """The conffiles dpkg's status lists for installed packages: each is to be there; its content
    is the admin's to change, so its checksum is not held (None)."""
    excluded = excluded_by_dpkg()
    try:
        with open("/var/lib/dpkg/status", errors="replace") as f:
            stanzas = f.read().split("\n\n")
    except OSError:
        return
    for stanza in stanzas:
        package = next((line[9:].strip() for line in stanza.splitlines() if line.startswith("Package: ")), None)
        if not package or "\nStatus: install ok installed" not in "\n" + stanza:
            continue
        listed = stanza.partition("\nConffiles:\n")[2]
        for line in listed.splitlines():
            if not line.startswith(" "):
                break
            words = line.split()
            if len(words) >= 2 and words[-1] != "obsolete" and words[0].startswith("/") and not excluded(words[0]):
                yield words[0], package, "conffile", None, "md5"


def wheel_files():
    for base in dict.fromkeys(p for p in sys.path if p and os.path.isdir(p)):
        for record in sorted(glob.glob(os.path.join(base, "*.dist-info", "RECORD"))):
            dist = os.path.basename(os.path.dirname(record))[:-len(".dist-info")].rsplit("-", 1)[0]
            with open(record, errors="replace") as f:
                for row in f:
                    path, _, rest = row.rstrip("\n").partition(",")
                    digest = rest.partition(",")[0]
                    if digest.startswith("sha256=") and "__pycache__/" not in path:  # bytecode: Python rewrites it
                        yield os.path.normpath(os.path.join(base, path)), dist, "wheel", digest[len("sha256="):], "sha256"


# Where a package's files are programs (Debian policy: executable); a mode dpkg does not record.
PROGRAMS = re.compile(r"^(?:/usr(?:/local)?)?/s?bin/[^/]+$|^/usr/games/[^/]+$")


def runnable(path):
    """None, or "not executable" for a program of a bin folder that no one may execute."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return "not executable" if stat.S_ISREG(mode) and not mode & 0o111 else None


def main():
    allowed = re.compile(sys.argv[sys.argv.index("--missing-allowed") + 1]) if "--missing-allowed" in sys.argv else None
    checked, faults = 0, []
    packaged = list(dpkg_files()) + list(conffiles())
    # A file dpkg installed is judged by dpkg's checksum: Debian's python3-* packages keep the RECORD of
    # their build, whose sums predate the packaging (binaries stripped), so it would call them changed.
    by_dpkg = {row[0] for row in packaged}
    for path, owner, by, digest, algorithm in packaged + [row for row in wheel_files() if row[0] not in by_dpkg]:
        checked += 1
        found = state(path, digest, algorithm) or (runnable(path) if by == "dpkg" and PROGRAMS.match(path) else None)
        if found and not (found == "missing" and allowed and allowed.match(path)):
            faults.append({"path": path, "owner": owner, "by": by, "state": found})
    print(dumps({"checked": checked, "count": len(faults), "faults": faults[:MOST]}))


if __name__ == "__main__":
    main()
