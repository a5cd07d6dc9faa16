"""LaTeX through Manim's default template: a MathTex compiled by latex, converted by dvisvgm."""
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("COLUMNS", "250")  # Manim logs through rich: keep its messages on one line

from manim import MathTex, config  # noqa: E402
from manim.utils.tex_file_writing import make_tex_compilation_command  # noqa: E402


def tex_errors(log: str) -> str:
    """The "!" lines of a TeX log, each with the file TeX had opened or closed last before it (its
    log wraps lines at 79 characters and shows "(file" on opening, ")" on closing): where an error
    comes at a file's end (a file cut short: "! Incomplete \\ifx; all text was ignored after line
    88."), that file is the culprit, and TeX's own line does not name it."""
    text = re.sub(r"^(.{79})\n", r"\1", log, flags=re.M)
    said, opened, last = [], [], None
    for token in re.finditer(r"^!.*|\((\.?/[^\s()]+)?|\)", text, re.M):  # a "(" of prose is matched by its ")"
        if token.group(0).startswith("!"):
            said.append(f"{token.group(0)}\n(after {last})" if last else token.group(0))
        elif token.group(0) == ")":
            last = (opened.pop() if opened else None) or last
        else:
            opened.append(token.group(1))
            last = token.group(1) or last
    return "\n".join(said)


FORMULA = sys.argv[1] if len(sys.argv) > 1 else r"\int_0^1 x^2\,dx = \frac{1}{3}"

config.media_dir = tempfile.mkdtemp(prefix="rendergate-manim-")
try:
    tex = MathTex(FORMULA)
except Exception:
    # LaTeX's own account of the failure: the "!" lines of its log ("! LaTeX Error: File
    # `standalone.cls' not found."), or, where it wrote none (a format it cannot load), the words
    # Manim sends to /dev/null, asked again ("---! .../latex.fmt was written by tex").
    for tex_file in Path(config.media_dir).rglob("*.tex"):
        log = tex_file.with_suffix(".log")
        if log.exists():
            print(tex_errors(log.read_text(errors="replace")), file=sys.stderr)
            continue
        template = config.tex_template
        said = subprocess.run(make_tex_compilation_command(template.tex_compiler, template.output_format, tex_file,
                                                           tex_file.parent), capture_output=True, text=True)
        print(said.stdout + said.stderr, file=sys.stderr)
    raise
print(json.dumps({
    "formula": FORMULA,
    "paths": len(tex.family_members_with_points()),
    "width": float(tex.width),
}))
