"""What an image holds, asked of it through a target: which installed package (dpkg's lists and
checksums) or wheel (its RECORD) a file belongs to and whether it is that package's own, which
distributions provide a Python module, where a name resolves to and what a program loads."""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from rendergate.core.parsers import parse_probe_output

# What images leave out of their packages (rm -rf /usr/share/doc/*, dpkg's path-exclude: images/*/Dockerfile),
# which no program needs.
DOCUMENTATION = re.compile(r"/usr/share/(?:doc|man|info|locale|lintian|doc-base|bug)(?:/|$)")


@dataclass(frozen=True)
class Packaged:
    """A file an installed package's file list names, and what became of it in the image."""
    package: str
    path: str
    state: str  # "ok", "gone" (deleted), "damaged" (differs from the package's checksum, or empty), "unreadable"
    conffile: bool = False  # a conffile (/etc): dpkg keeps its changes on a plain reinstall


def escaped(name: str) -> str:
    return re.sub(r"([.\[\]()*+?{}|^$\\])", r"\\\1", name)  # ERE's specials only (grep warns of others)


def pattern_of(names: list[str]) -> str:
    """A grep -E pattern for a path ending in one of `names` (a library also by its versioned file
    name), or that very path."""
    if len(names) == 1 and names[0].startswith("/"):
        return f"^{escaped(names[0])}$"
    versioned = "(\\.[0-9]+)*" if any(".so" in name for name in names) else ""
    return f"/({'|'.join(map(escaped, names))}){versioned}$"


# Files no program needs to run, left out by lean images (path-exclude, rm -rf /usr/share/doc): never
# what a line blames (grep -E's words for DOCUMENTATION).
_NOT_LOOKED_AT = "^" + DOCUMENTATION.pattern.replace("(?:", "(")


def _packaged_script(pattern: str, lists: str, most: int) -> str:
    """Shell (busybox's too): each file of the installed packages' lists `lists` (a glob) that
    matches `pattern` (grep -E; at most `most` of each list; documentation aside), whether it is there, and whether it
    matches the package's md5sum: *.md5sums, or for a conffile (which those leave out) the
    "Conffiles:" of dpkg's status ("+conf" after the state)."""
    return (f"for list in /var/lib/dpkg/info/{lists}.list; do [ -f \"$list\" ] || continue; "
            f"grep -E {shlex.quote(pattern)} \"$list\" 2>/dev/null | grep -vE {shlex.quote(_NOT_LOOKED_AT)} "
            f"| head -{most} | while read -r path; do "
            "pkg=${list##*/}; pkg=${pkg%.list}; "
            "if [ -d \"$path\" ]; then continue; fi; "
            "conf=$(grep -F \" $path \" /var/lib/dpkg/status 2>/dev/null | head -1 | cut -d' ' -f3); kind=${conf:++conf}; "
            "if [ ! -e \"$path\" ]; then echo \"gone$kind $pkg $path\"; continue; fi; "
            "if [ ! -r \"$path\" ]; then echo \"unreadable$kind $pkg $path\"; continue; fi; "
            "sums=/var/lib/dpkg/info/$pkg.md5sums; want=$(grep \" ${path#/}$\" \"$sums\" 2>/dev/null | cut -d' ' -f1); "
            "want=${want:-$conf}; "
            "if [ ! -s \"$path\" ]; then echo \"damaged$kind $pkg $path\"; "
            "elif [ -n \"$want\" ] && [ \"$(md5sum \"$path\" | cut -d' ' -f1)\" != \"$want\" ]; then echo \"damaged$kind $pkg $path\"; "
            "else echo \"ok$kind $pkg $path\"; fi; done; done")


def packaged(target, pattern: str, lists: str = "*", most: int = 3) -> list[Packaged]:
    """The files of installed packages (those of `lists`) whose paths match `pattern`, with the
    state of each: dpkg's lists still name a file that was deleted."""
    result = target.run(_packaged_script(pattern, lists, most), timeout=60)
    found = []
    for line in result.stdout.splitlines():
        state, _, rest = line.partition(" ")
        state, conf, _ = state.partition("+")
        package, _, path = rest.partition(" ")
        if state in ("ok", "gone", "damaged", "unreadable") and path:
            found.append(Packaged(package.split(":")[0], path, state, bool(conf)))
    return found


def wheel_of(target, name: str) -> dict | None:
    """The installed wheel whose RECORD names a file `name` (a library a wheel bundles, or a path),
    with which of its files are missing or differ from RECORD's checksum, if any."""
    result = target.run_probe("distributions", "--file", name, timeout=60)
    owners = parse_probe_output(result.stdout)["owners"] if result.rc == 0 else []
    return owners[0] if owners else None


def distributions(target, module: str) -> list[dict]:
    """The installed distributions that provide the top-level package of `module`, each with the
    files of it its RECORD names but the image lacks."""
    result = target.run_probe("distributions", "--module", module, timeout=60)
    return parse_probe_output(result.stdout)["owners"] if result.rc == 0 else []


def installed(target, package: str) -> bool:
    """Whether dpkg has `package` installed."""
    return target.run(f"dpkg-query -W -f='${{db:Status-Status}}' {shlex.quote(package)} 2>/dev/null", timeout=60) \
        .stdout.strip() == "installed"


def resolved(target, name: str) -> str:
    """The real file a program's name (the one on PATH, searched by hand: command -v passes over
    a file that cannot run) or a path leads to; "" when there is none."""
    quoted = shlex.quote(name)
    path = target.run(f"case {quoted} in /*) readlink -f {quoted};; *) IFS=:; for d in $PATH; do "
                      f"[ -e \"$d\"/{quoted} ] && readlink -f \"$d\"/{quoted} && break; done;; esac", timeout=60).stdout.strip()
    return path if path.startswith("/") else ""


def packaged_file(target, path: str) -> Packaged | None:
    """The installed package whose file list names `path` (or its twin outside merged /usr)."""
    rest = path.removeprefix("/usr")
    return next(iter(packaged(target, f"^(/usr)?{escaped(rest)}$")), None)


def listed(target, paths: list[str]) -> list[Packaged]:
    """The files of installed packages named as `paths` are (by their real names), with their state."""
    return packaged(target, pattern_of([p.rsplit("/", 1)[1] for p in paths]), most=1000) if paths else []


def loaded(target, path: str) -> list[str]:
    """The files of the libraries the file `path` loads, as ldd resolves them: their real paths
    (libflite_cmu_us_rms.so.1 is the file libflite_cmu_us_rms.so.2.2, the one dpkg lists)."""
    if not path:
        return []
    listed = target.run(f"ldd {shlex.quote(path)} 2>/dev/null | while read -r name arrow file rest; do "
                        "[ \"$arrow\" = '=>' ] && [ -e \"$file\" ] && readlink -f \"$file\"; done", timeout=60).stdout
    return sorted({line for line in listed.splitlines() if line.startswith("/")})
