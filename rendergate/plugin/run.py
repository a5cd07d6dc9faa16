"""The run: whether it validates at all (and what it collects besides what it was given), its
configuration (read once from the options, handed to xdist's workers), and the process that
owns it and releases its targets however it ends."""
from __future__ import annotations

import atexit
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from rendergate.core import verdict
from rendergate.core.assets import SUITES
from rendergate.core.environment import describe_host
from rendergate.core.gpuinfo import GpuInfo
from rendergate.core.manifest import ManifestError, Variant, load_variants
from rendergate.core.redact import remember_secrets
from rendergate.core.requirements import RegistryError
from rendergate.core.runstate import RunState, interrupt_on_sigterm
from rendergate.core.verdict import Verdict
from rendergate.engines.docker_engine import owner_label
from rendergate.engines.kind import Cell, Launch, SetupError
from rendergate.engines.kinds import KINDS, cells
from rendergate.plugin import check_modules

RUN_KEY = pytest.StashKey["RunConfig"]()


@dataclass
class RunConfig:
    cells: list[Cell]
    target: str
    allow_no_gpu: bool
    launch: Launch
    host: dict
    check_folders: list[Path]  # the user's folders of checks, collected beside the suites
    promoted_dir: Path | None = None
    tier: str = "smoke"
    record_sbom: bool = True  # each image's SBOM, recorded by the process that opens its target

    @property
    def run_id(self) -> str:
        return self.launch.run_id

    @property
    def reports_dir(self) -> Path:
        return self.launch.reports_dir

    def verdict_file(self, name: str) -> Path:
        """Where the verdict of a cell (its key: manim, manim@T4) is written; its SBOM goes beside it."""
        return self.reports_dir / "verdicts" / f"{name}.json"

    def host_of(self, cell: Cell) -> dict:
        """Where the cell's checks run, as its verdict states it."""
        return KINDS[cell.kind].describe(cell, self.host, self.launch)

    def gpus_of(self, cell: Cell) -> list[GpuInfo]:
        """The GPUs a cell's checks run on: its machine's, or a matrix cell's GPU type (none: no GPU)."""
        return KINDS[cell.kind].gpus(cell, self.launch)

    def promoted(self, variant: Variant) -> Verdict | None:
        """The verdict of the variant's last promoted image, if one was kept."""
        path = self.promoted_dir / f"{variant.name}.json" if self.promoted_dir else None
        return verdict.load(path) if path and path.is_file() else None


def _images_dir(config) -> Path | None:
    """The folder of variants this run names or finds; None when there is none."""
    if config.option.images_dir:
        return Path(config.option.images_dir)
    ini = config.getini("rendergate_images")
    if ini:
        return config.rootpath / ini
    found = config.rootpath / "images"
    return found if any(found.glob("*/manifest.toml")) else None


def check_folders(config, ini: bool = True) -> list[Path]:
    """The folders of the user's own checks this run names (--checks, else the ini option)."""
    named = [config.invocation_params.dir / p for p in config.option.checks]
    return [p.resolve() for p in (named or (config.getini("rendergate_checks") if ini else []))]


def _validates(config) -> bool:
    """Whether this run validates variants, adding rendergate's suites (and the user's folders of
    checks) to what pytest collects when the command line did not name them. A run given the
    suites (or some of them) does; one that names rendergate's options does; one given no paths,
    or a folder above the suites (`.`), does when it finds a folder of variants. Any other run of
    pytest is none of rendergate's. Folders named by --checks are collected whatever else is named."""
    if config.option.help or config.option.version:
        return False
    named = [(config.invocation_params.dir / a.split("::")[0]).resolve() for a in config.args]
    if any(p == SUITES or SUITES in p.parents for p in named):
        _collect_too(config, named, check_folders(config, ini=False))
        return True
    asked = config.option.images_dir or config.option.variant or config.option.image or config.option.checks
    by_convention = config.args_source != pytest.Config.ArgsSource.ARGS or any(p in SUITES.parents for p in named)
    if not asked and not (by_convention and _images_dir(config) is not None):
        return False
    _collect_too(config, named, [SUITES, *check_folders(config)])
    return True


def _collect_too(config, named: list[Path], folders: list[Path]) -> None:
    """Add folders to what pytest collects. rendergate's suites always (a named folder above them,
    if they are in a venv, is never recursed into); a folder of checks unless a named path holds it."""
    config.args += [str(p) for p in folders if p == SUITES or not any(p == n or n in p.parents for n in named)]


@pytest.hookimpl(tryfirst=True)  # the run's configuration exists before the other plugins configure
def pytest_configure(config):
    config.addinivalue_line("markers", "requires(name): the manifest requirement a check validates")
    config.addinivalue_line("markers", "needs_gpu: the check cannot be validated without an NVIDIA GPU")
    config.addinivalue_line("markers", "not_applying(outcome): set by rendergate: the check does not apply to this "
                                       "variant (not declared, not applicable)")
    config.addinivalue_line("markers", "timed: a timed workload; it runs with the machine to itself")
    config.addinivalue_line("markers", "container_only: the check is about containers (the NVIDIA toolkit); "
                                       "not applicable to variants checked on the host itself")
    config.addinivalue_line("markers", "reads_every_file: the check reads every file of the image (mutation testing "
                                       "leaves it out of what it records the checks use)")
    if not _validates(config):  # decided alike by xdist's workers: they get the same command line
        return
    worker = getattr(config, "workerinput", None)
    opt = config.option
    images_dir = _images_dir(config) or config.rootpath / "images"
    folders = check_folders(config)
    try:
        check_modules.load(folders)
    except RegistryError as e:
        raise pytest.UsageError(f"bad check module: {e}") from None
    try:
        known = load_variants(images_dir)
    except ManifestError as e:
        raise pytest.UsageError(f"bad manifest: {e}") from None
    if not known:
        raise pytest.UsageError(f"{images_dir}: no variants (each needs a folder with a manifest.toml)")
    unknown = [n for n in opt.variant if n not in known]
    if unknown:
        raise pytest.UsageError(f"unknown variant {', '.join(unknown)} (known: {', '.join(known)})")
    extra_ca = Path(opt.extra_ca) if opt.extra_ca else None
    if extra_ca and not extra_ca.is_file():
        raise pytest.UsageError(f"--extra-ca {extra_ca}: no such file")
    for variant in known.values():
        remember_secrets(variant.run.get("env", {}))
    kind_options = {o.dest: getattr(opt, o.dest) for kind in KINDS.values() for o in kind.options}
    try:
        chosen = cells([known[n] for n in (opt.variant or known)], opt.target, kind_options, opt.runtime, opt.image)
    except SetupError as e:
        raise pytest.UsageError(str(e)) from None
    launch = Launch(run_id=worker["rendergate_run_id"] if worker else uuid.uuid4().hex[:12],
                    owner=worker["rendergate_owner"] if worker else owner_label(), runtime=opt.runtime,
                    check_timeout=opt.check_timeout,
                    reports_dir=Path(opt.reports_dir).resolve() if opt.reports_dir else config.rootpath / "reports",
                    base_image=opt.base_image, extra_ca=extra_ca, options=kind_options,
                    engine_hosts=json.loads(worker["rendergate_engine_hosts"]) if worker else {})
    host = json.loads(worker["rendergate_host"]) if worker else {
        **describe_host(), "sandbox_runtime": KINDS[opt.target].runtimes[opt.runtime]}
    run = RunConfig(cells=chosen, target=opt.target, allow_no_gpu=opt.allow_no_gpu, launch=launch, host=host,
                    check_folders=folders, promoted_dir=Path(opt.promoted) if opt.promoted else None, tier=opt.tier,
                    record_sbom=not opt.no_sbom)
    config.stash[RUN_KEY] = run
    if worker is None:
        config.pluginmanager.register(RunOwner(run), "rendergate-run-owner")
        for name, mine in _by_kind(run.cells).items():
            try:
                KINDS[name].prepare(mine, launch)
            except SetupError as e:
                raise pytest.UsageError(str(e)) from None


def _by_kind(chosen: list[Cell]) -> dict[str, list[Cell]]:
    found: dict[str, list[Cell]] = {}
    for cell in chosen:
        found.setdefault(cell.kind, []).append(cell)
    return found


class RunOwner:
    """The process that owns the run (xdist's controller, or the only process): it hands the run's
    id, owner and host description to the workers, and releases every target of the run when
    the run ends, is interrupted (Ctrl-C, SIGTERM), or exits in any other way."""

    def __init__(self, run: RunConfig):
        self.run = run
        self.state = RunState(run.run_id)
        atexit.register(self.release)
        interrupt_on_sigterm()  # CI cancelling a job: unwinds through pytest's session finish

    @pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: absent under -p no:xdist
    def pytest_configure_node(self, node):
        node.workerinput["rendergate_run_id"] = self.run.run_id
        node.workerinput["rendergate_owner"] = self.run.launch.owner
        node.workerinput["rendergate_host"] = json.dumps(self.run.host)
        node.workerinput["rendergate_engine_hosts"] = json.dumps(self.run.launch.engine_hosts)

    def pytest_sessionstart(self, session):
        """In the run's controlling process, once the verdicts say partial and before any worker
        starts: each kind obtains its cells' images. A cell whose image cannot be made (a build
        that fails) is recorded as such: each of its checks then fails with that one line."""
        if session.config.option.collectonly:
            return

        def failed(cell: Cell, line: str) -> None:
            with self.state.claimed(cell.key):
                self.state.record(cell.key, {"failed": line})

        for name, mine in _by_kind(self.run.cells).items():
            try:
                KINDS[name].obtain(mine, self.run.launch, failed)
            except SetupError as e:
                raise pytest.UsageError(str(e)) from None

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session):
        self.release()

    def release(self) -> None:
        opened = [record for record in self.state.recorded() if "kind" in record]
        with ThreadPoolExecutor(max_workers=max(1, len(opened))) as pool:  # at once: each takes the engine ~0.2 s
            list(pool.map(lambda record: KINDS[record["kind"]].release(record["handle"]), opened))
        for name, mine in _by_kind(self.run.cells).items():  # started, never recorded
            KINDS[name].sweep(mine, self.run.run_id)
        self.state.remove()


