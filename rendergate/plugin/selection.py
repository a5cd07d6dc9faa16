"""What a run was asked to run beyond every check of every variant: the pytest options and ini
settings that leave checks out, as its verdicts record them (the gate refuses a trimmed run)."""
from __future__ import annotations

from pathlib import Path

from rendergate.core.assets import SUITES
from rendergate.core.redact import redact
from rendergate.core.selection import Selection


def selection(config, check_folders: list[Path]) -> Selection:
    """What this run was asked to run, beyond every check of every variant: pytest's options that
    leave checks out, and the files or node ids of checks it was given instead of whole folders."""
    opt = config.option
    named = []
    for arg in opt.file_or_dir or []:
        path = (config.invocation_params.dir / arg.split("::")[0]).resolve()
        of_checks = any(path == folder or folder in path.parents for folder in (SUITES, *check_folders))
        if of_checks and ("::" in arg or path.is_file()):
            named.append(redact(arg))
    return Selection(named=named, keyword=redact(opt.keyword or ""), markexpr=redact(opt.markexpr or ""),
                     deselect=[redact(d) for d in opt.deselect or []],
                     ignore=[redact(str(i)) for i in [*(opt.ignore or []), *(getattr(opt, "ignore_glob", None) or [])]],
                     last_failed=bool(getattr(opt, "lf", False)), stepwise=bool(getattr(opt, "stepwise", False)),
                     maxfail=opt.maxfail or 0, dry_run=next((flag for flag, on in DRY_RUNS if getattr(opt, on, False)), ""),
                     overrides=[redact(o) for o in opt.override_ini or [] if o.split("=", 1)[0].strip() in COLLECTING_INI],
                     collecting=[redact(f"{key}={_ini_text(config.getini(key))}") for key, default in COLLECTING_INI.items()
                                 if config.getini(key) != default],
                     ini=redact(str(config.inipath or "")))


def _ini_text(value) -> str:
    """An ini value as an ini file says it: a list's items separated by spaces."""
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


# pytest's ini options that decide what is collected, with pytest's defaults (its docs, "Configuration
# options"): overridden with -o, or set otherwise in an ini file, they may leave checks out.
COLLECTING_INI = {"python_files": ["test_*.py", "*_test.py"], "python_classes": ["Test"], "python_functions": ["test"],
                  "norecursedirs": ["*.egg", ".*", "_darcs", "build", "CVS", "dist", "node_modules", "venv", "{arch}"],
                  "collect_imported_tests": True}

# pytest's options under which a run calls no check at all, as typed, and their option names.
DRY_RUNS = (("--collect-only", "collectonly"), ("--setup-plan", "setupplan"), ("--setup-only", "setuponly"),
            ("--fixtures", "showfixtures"), ("--fixtures-per-test", "show_fixtures_per_test"))
