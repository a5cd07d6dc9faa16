"""The pytest-html report, extended through its hooks: the environment table (host, GPUs, driver,
CUDA, toolkit, images and their digests, suite version); at the top the state banner, what to do
per variant (its verdict state, failures, what was not validated and why), then the variant x
check matrix; and each check's evidence (thumbnails of kept pictures, videos that play
in the page, speedup charts). The commands a check ran are its log (rendergate.plugin.gating).

The report is regenerated after every check (pytest-html's `generate_report_on_test`), with the
banner saying PARTIAL until the run has finished: a run that is killed still leaves a report.
Checks of requirements a variant does not declare (or that do not apply to it) get no row of
their own in the per-check table: the matrix shows them as such.
"""
from __future__ import annotations

import base64
from html import escape
from pathlib import Path

import pytest

from rendergate.core.outcomes import NOT_COUNTED
from rendergate.core.redact import redact
from rendergate.core.verdict import Verdict
from rendergate.pages import (
    CSS,
    HOST_ROWS,
    banner_html,
    comparison_html,
    matrix_html,
    speedup_chart,
    summary_html,
    thumbnail,
)
from rendergate.plugin.notes import CheckNotes, notes_in, notes_of
from rendergate.plugin.run import RUN_KEY

# Videos larger than this are linked, not embedded, so that the report still opens quickly.
MAX_EMBEDDED_VIDEO = 16 * 1024 * 1024


def pytest_configure(config):
    if config.getoption("htmlpath", None) and RUN_KEY in config.stash and not hasattr(config, "workerinput"):
        config.pluginmanager.register(HtmlReport(config), "rendergate-html")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if call.when == "call" and item.config.getoption("htmlpath", None):
        report.extras = getattr(report, "extras", []) + evidence(notes_of(item))
    return report


def evidence(notes: CheckNotes | None) -> list[dict]:
    """pytest-html extras for what a check kept: videos that play in the page, pictures as
    thumbnails (a mismatch as new / reference / diff side by side), and figure charts."""
    from pytest_html import extras

    if notes is None:
        return []
    kept = [Path(p) for p in notes.artifacts if Path(p).is_file()]
    videos = [p for p in kept if p.suffix == ".mp4"]
    found = [extras.mp4(_b64(p.read_bytes()), p.name) if p.stat().st_size <= MAX_EMBEDDED_VIDEO
             else extras.url(p.resolve().as_uri(), p.name) for p in videos]
    pictures = {p.name: p for p in kept if p.suffix == ".png"}
    for name, path in pictures.items():
        stem = name.removesuffix("-new.png")
        mismatch = [pictures.get(f"{stem}-{part}.png") for part in ("new", "reference", "diff")]
        if name.endswith("-new.png") and any(mismatch[1:]):
            found.append(extras.html(comparison_html(stem, [(part, p.read_bytes()) for part, p in
                                                            zip(("new", "reference", "diff"), mismatch) if p])))
        elif not name.endswith(("-reference.png", "-diff.png")):
            found.append(extras.png(_b64(thumbnail(path.read_bytes())), name))
    found += [extras.html(speedup_chart(name, figure)) for name, figure in notes.figures.items()
              if "paired_speedups" in figure]
    return found


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class HtmlReport:
    def __init__(self, config):
        self.config = config
        self.run = config.stash[RUN_KEY]
        self.summary = None  # pytest-html's summary sections, handed to pytest_html_report_title
        self.metadata: dict = {}

    @property
    def outcomes(self):
        return self.config.pluginmanager.getplugin("rendergate-outcomes")

    @pytest.hookimpl(tryfirst=True)  # before pytest-html reads the environment
    def pytest_sessionstart(self, session):
        from pytest_metadata.plugin import metadata_key

        self.metadata = self.config.stash[metadata_key]
        for key in list(self.metadata):
            if isinstance(self.metadata[key], str):
                self.metadata[key] = escape(redact(self.metadata[key]))
        for key, label in HOST_ROWS:  # where the images ran: each engine's host (several: each value once)
            said = dict.fromkeys(str(host.get(key, "")) for host in self._hosts())
            self.metadata[label] = escape(redact("; ".join(said)))
        self.metadata["Variants"] = escape(", ".join(f"{c.key} ({c.kind})" for c in self.run.cells))
        self.metadata["Images"] = {}

    def _hosts(self) -> list[dict]:
        return [self.run.host_of(cell) for cell in self.run.cells] or [self.run.host]

    def pytest_html_report_title(self, report):
        variants = ", ".join(sorted({c.variant.name for c in self.run.cells}))
        places = dict.fromkeys(f"{host['gpu_type']} ({host['host']})" for host in self._hosts())
        report.title = f"rendergate: {variants} on {', '.join(places)}"
        self.summary = report.additional_summary
        self._update("running")

    def pytest_runtest_logreport(self, report):
        """After the verdicts took a check's result in, before pytest-html regenerates the page
        (both happen once a check's teardown is reported)."""
        if report.when != "teardown":
            return
        for name, verdict in self.outcomes.verdicts.items():
            if verdict.image:
                image = verdict.image
                self.metadata["Images"][name] = escape(f"{image['ref']} ({image['digest']})")
        self._update("running")

    def pytest_html_results_table_row(self, report, cells):
        notes = notes_in(report)
        if notes and notes.skip in NOT_COUNTED:
            cells.clear()  # pytest-html then leaves the row out

    def pytest_html_results_summary(self, prefix, summary, postfix, session):
        self._update("complete" if self.outcomes.complete else "interrupted")

    def _update(self, state: str) -> None:
        if self.summary is None:
            return
        written = {name: Verdict.from_json(v) for name, v in self.outcomes.written.items()}  # as their files hold them
        files = {id(v): self.run.verdict_file(name) for name, v in written.items()}
        verdicts = list(written.values())
        self.summary["prefix"][:] = [f"<style>{CSS}</style>", banner_html(state, verdicts),
                                     summary_html(verdicts, lambda v: self.outcomes.reviewer(v, files[id(v)])),
                                     matrix_html(verdicts, link=True)]
