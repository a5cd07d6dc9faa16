"""The house's rules, held by tests: the core imports no pytest, Docker or Modal; the verdict
schema's enums are the code's own sets; a verdict file reads back as the typed Verdict it was
written from; and a kind of target is one module implementing the protocol plus one line."""
import json
import os
import pkgutil
import subprocess
import sys
import textwrap

import rendergate.core
from conftest import ROOT, SMALL_REPO, SUITE_TIMEOUT, bounded, read_verdicts, written_verdict
from rendergate.core.assets import VERDICT_SCHEMA
from rendergate.core.diagnosis import Cause
from rendergate.core.manifest import load_variant
from rendergate.core.outcomes import OF_A_CHECK, OF_A_REQUIREMENT, State
from rendergate.core.platforms import Platform
from rendergate.core.verdict import checked
from rendergate.engines.kinds import KINDS

CORE_MODULES = [f"rendergate.core.{m.name}" for m in pkgutil.iter_modules(rendergate.core.__path__)]


def test_no_core_module_imports_pytest_docker_or_modal():
    found = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import importlib, sys
        for name in {CORE_MODULES!r}:
            importlib.import_module(name)
        print(sorted(m for m in ("pytest", "_pytest", "docker", "modal", "testinfra") if m in sys.modules))""")],
        capture_output=True, text=True, timeout=60, check=True)
    assert len(CORE_MODULES) > 10 and found.stdout.strip() == "[]", found.stdout


def test_the_verdict_schemas_enums_are_the_codes_own_sets():
    schema = json.loads(VERDICT_SCHEMA.read_text())
    check = schema["$defs"]["check"]["properties"]
    assert check["outcome"]["enum"] == [o.value for o in OF_A_CHECK]
    assert check["cause"]["enum"] == [c.value for c in Cause] + [None]
    requirement = schema["properties"]["requirements"]["additionalProperties"]["properties"]["outcome"]["enum"]
    assert sorted(requirement) == sorted(o.value for o in OF_A_REQUIREMENT)
    assert schema["properties"]["state"]["enum"] == [s.value for s in State]
    assert schema["properties"]["platform"]["enum"] == [p.value for p in Platform]
    target = schema["properties"]["target"]
    assert all(checked({**written_verdict(load_variant(ROOT / "images" / "manim"), {"gpu_type": "no GPU"}, target=name)},
                       name) for name in KINDS)  # every kind's verdict is one by the schema
    assert "enum" not in target, "a kind of target is one module and one line in KINDS: not a third place"


def test_a_verdict_file_reads_back_as_the_typed_verdict_it_was_written_from():
    manim = load_variant(ROOT / "images" / "manim")
    for written in (written_verdict(manim, {"gpu_type": "L4"}),
                    written_verdict(manim, {"gpu_type": "L4"}, outcomes={"latex": "failed", "nvenc": "no-gpu"}),
                    {**written_verdict(manim, {"gpu_type": "T4"}, target="modal"), "platform": "gVisor",
                     "sandboxes": [{"gpu_type": "T4", "at": 1.0}], "gpu_seconds": 12,
                     "promotion": {"to": "registry/manim:1", "at": "2026-12-05T10:00:00Z", "pushed_digest": None}}):
        typed = checked(written, "written")  # valid by the schema, read back as a Verdict
        assert typed.checks and all(c.outcome in OF_A_CHECK for c in typed.checks)
        assert typed.as_json() == written  # judged again, to the same state and summary


# A kind of target of the test's own: this host, as a separate kind with an option of its own,
# registered by one line (the module's last). Imported by `-p` before rendergate's options are made.
THROWAWAY_KIND = '''\
from rendergate.engines.host import LocalKind, LocalTarget
from rendergate.engines.kind import Cell, Option
from rendergate.engines.kinds import KINDS


class ThrowawayKind(LocalKind):
    """Each variant's checks on this host, as if it were its image (a stand-in for a new engine)."""
    name = "throwaway"
    runs_images = True
    options = (Option("--throwaway-note", "a note of the throwaway kind", "a word its targets keep", default=""),)

    def cells(self, variants, options, image):
        self.note = options["throwaway_note"]
        return [Cell(v, self.name) for v in variants]

    def checked_in(self, cell):
        return f"throwaway-{self.note}"

    def start(self, cell, launch):
        assert launch.options["throwaway_note"] == self.note
        return LocalTarget(cell.variant, launch.check_timeout)


KINDS["throwaway"] = ThrowawayKind()
'''


def test_a_target_kind_is_one_module_and_one_line_in_the_table(tmp_path):
    """No other change: its options reach the command line (and are refused with another
    --target), its checks run through its targets, its verdicts name it."""
    (tmp_path / "throwaway_kind.py").write_text(THROWAWAY_KIND)
    (tmp_path / "images" / "small").mkdir(parents=True)
    (tmp_path / "images" / "small" / "manifest.toml").write_text(
        'image = "throwaway/small:1"\n\n[requirements]\ntools = ["sh"]\n\n[run]\ngpus = "none"\n')
    reports = tmp_path / "reports"
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}

    def run(*args):
        return bounded([sys.executable, "-m", "pytest", "-p", "throwaway_kind", "-p", "no:randomly", "-q", "-p", "no:xdist",
                        f"--images-dir={tmp_path / 'images'}", f"--checks={SMALL_REPO / 'checks'}",
                        f"--reports-dir={reports}", *args], SUITE_TIMEOUT, cwd=ROOT, env=env)

    refused = run("--throwaway-note=x")
    assert refused.returncode == 4 and "--throwaway-note is a note of the throwaway kind: it needs --target throwaway" \
        in refused.stdout + refused.stderr, refused.stdout + refused.stderr
    done = run("--target=throwaway", "--throwaway-note=here")
    verdict = read_verdicts(reports)["small"]
    assert verdict["target"] == "throwaway", done.stdout
    ran = {c["check"]: c for c in verdict["checks"]}
    assert ran["test_tool_on_path"]["outcome"] == "passed" and "small@throwaway-here-sh" in ran["test_tool_on_path"]["nodeid"]


OLD_STYLE_CHECK = '''\
from rendergate.diagnosis import Cause
from rendergate.requirements import declare
from rendergate.schema import boolean

OLD_STYLE = declare("old_style", boolean, "true or false", "a check module as rendergate 0.2 wrote them")
pytestmark = OLD_STYLE.mark


def test_old_style(target):
    assert Cause.TOOL_MISSING
'''


def test_a_check_module_written_for_0_2_still_loads_and_is_told_where_things_went(tmp_path):
    (tmp_path / "checks").mkdir()
    (tmp_path / "checks" / "test_old.py").write_text(OLD_STYLE_CHECK)
    loaded = subprocess.run([sys.executable, "-W", "always::DeprecationWarning", "-c", textwrap.dedent(f"""
        from rendergate.core import requirements
        from rendergate.plugin import check_modules
        check_modules.load([{str(tmp_path / 'checks')!r}])
        print(requirements.get("old_style").proves)""")], capture_output=True, text=True, timeout=60)
    assert loaded.returncode == 0 and "a check module as rendergate 0.2 wrote them" in loaded.stdout, loaded.stderr
    for said in ("rendergate.requirements is now rendergate.core.requirements", "rendergate.schema is now rendergate.core.schema",
                 "rendergate.diagnosis is now rendergate.core.diagnosis", "mark checks with rendergate.plugin.requires"):
        assert said in loaded.stderr, loaded.stderr
