"""HTML pieces infra reviewers read: the run's state banner, what to do per variant (its verdict
state, its failures, what was not validated and why), the variant x check matrix, speedup charts
and thumbnails, and the merged report of verdicts from several hosts.

Everything is plain HTML and inline SVG with its own CSS: a report opens offline, without
scripts from anywhere. The pytest-html report embeds these pieces (fixtures/html_report.py); the
merged report (`python -m rendergate merge`) is made of them alone.
"""
from __future__ import annotations

import base64
import io
from datetime import datetime, timezone
from html import escape
from collections.abc import Callable
from typing import TYPE_CHECKING

from PIL import Image

from rendergate.core import requirements
from rendergate.core.comparison import gpu_seconds, platform_differences
from rendergate.core.judging import judge, judged_checks, requirement_outcomes, state_of, summary
from rendergate.core.outcomes import NOT_COUNTED, Outcome, State
from rendergate.core.platforms import Platform
from rendergate.core.verdict import Verdict

if TYPE_CHECKING:  # the mutation pages' types: the report every run writes needs none of them (nor Docker)
    from rendergate.mutation.run import Mutation
    from rendergate.release.review import Review

CSS = """
.rg-matrix { border-collapse: collapse; margin: 8px 0 16px; font: 13px sans-serif; }
.rg-matrix th, .rg-matrix td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
.rg-matrix td.rg-cell { text-align: center; min-width: 70px; cursor: help; }
.rg-matrix a { color: inherit; text-decoration: none; display: block; }
.rg-passed { background: #c8f0c8; } .rg-failed, .rg-error { background: #f5b5b5; font-weight: bold; }
.rg-no-gpu, .rg-undecided, .rg-host-busy, .rg-not-run, .rg-partial, .rg-not-validated { background: #fbe3a4; }
.rg-skipped, .rg-not-declared, .rg-not-applicable { background: #eee; color: #777; } .rg-unsupported { background: #dde6f5; }
.rg-banner { padding: 8px 12px; margin: 8px 0; font: bold 15px sans-serif; border-radius: 4px; }
.rg-problems { font: 13px sans-serif; }
.rg-verdict { padding: 6px 12px; margin: 6px 0; font: 14px sans-serif; border-radius: 4px; }
.rg-verdict ul { margin: 4px 0 0; padding-left: 20px; }
.rg-review { margin: 4px 0 0; font-size: 13px; } .rg-review summary { cursor: pointer; color: #555; }
/* pytest-html puts its environment table first: what to do comes first, the environment after it. */
body:has(#rg-summary) { display: flex; flex-direction: column; align-items: flex-start; }
body:has(#rg-summary) > .summary { order: 1; align-self: stretch; }
body:has(#rg-summary) > #environment-header, body:has(#rg-summary) > #environment { order: 2; }
body:has(#rg-summary) > #results-table, body:has(#rg-summary) > footer { order: 3; align-self: stretch; }
.rg-env { border-collapse: collapse; font: 13px sans-serif; margin-bottom: 12px; }
.rg-env th, .rg-env td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
"""
LABELS = {Outcome.PASSED: "pass", Outcome.FAILED: "FAIL", Outcome.ERROR: "ERROR", Outcome.SKIPPED: "skip",
          Outcome.NO_GPU: "no GPU", Outcome.UNDECIDED: "undecided", Outcome.HOST_BUSY: "host busy",
          Outcome.NOT_RUN: "not run", Outcome.NOT_DECLARED: "\u2014", Outcome.NOT_APPLICABLE: "\u2014",
          Outcome.UNSUPPORTED: "not supported by this GPU"}
HOST_ROWS = [("gpu_type", "GPU type"), ("host", "Host"), ("gpus", "GPUs"), ("gpu_models", "GPU models (capability table)"),
             ("driver", "Driver"), ("cuda", "CUDA"),
             ("container_toolkit", "Container toolkit"), ("docker_engine", "Docker engine"),
             ("sandbox_runtime", "Sandbox runtime"),
             ("suite_version", "rendergate"), ("started", "Started")]
THUMBNAIL_WIDTH = 480
# What to do, per variant, at the top of a report: at most this many lines (the matrix has the rest).
SUMMARY_LINES = 5


def column_label(verdict: Verdict, among: list[Verdict] = ()) -> str:
    """The variant, the image checked (when it ran in one), the GPU type, gVisor if it ran under it,
    and its host where another verdict `among` differs from it by the host alone (a matrix of engines)."""
    platform = " \u00b7 gVisor" if verdict.platform == Platform.GVISOR else ""
    image = f" ({verdict.image['ref']})" if verdict.image else ""
    twin = any(_order(v)[:3] == _order(verdict)[:3] and v.host.get("host") != verdict.host.get("host") for v in among)
    host = f" \u00b7 on {verdict.host.get('host')}" if twin else ""
    return f"{verdict.variant}{image} \u00b7 {verdict.host.get('gpu_type', '?')}{platform}{host}"


def _order(verdict: Verdict) -> tuple[str, str, str, str]:
    return verdict.variant, verdict.host.get("gpu_type", ""), verdict.platform or "", verdict.host.get("host", "")


def verdict_state(verdict: Verdict) -> State:
    """Judged again from the verdict's checks (whatever state it says it has)."""
    return state_of(judge(verdict))


def _rows(verdicts: list[Verdict]) -> list[tuple[str, str | None, str | None]]:
    """(requirement, check, item) rows in manifest order; a declared requirement no check of
    which ran still gets a row, so that it shows as not run."""
    order: dict[str, int] = {}
    for v in verdicts:
        for name in v.declared:
            order.setdefault(name, len(order))
    rows = {(c.requirement, c.check, c.item) for v in verdicts for c in v.checks if c.outcome not in NOT_COUNTED}
    rows |= {(name, None, None) for v in verdicts
             for name, r in requirement_outcomes(judged_checks(v), v.declared).items() if r["outcome"] == Outcome.NOT_RUN}
    return sorted(rows, key=lambda r: (order.get(r[0], len(order)), r[0], r[1] or "", r[2] or ""))


def _cell(verdict: Verdict, checks: dict, row, link: bool) -> str:
    requirement, check, item = row
    if requirement not in verdict.declared:
        return (f'<td class="rg-cell rg-not-declared" title="{escape(verdict.variant)} does not declare '
                f'{escape(requirement)}">{LABELS[Outcome.NOT_DECLARED]}</td>')
    entry = checks.get(row)
    if entry is None:
        return f'<td class="rg-cell rg-not-run" title="no check of {escape(requirement)} ran">{LABELS[Outcome.NOT_RUN]}</td>'
    outcome = entry.outcome
    label = LABELS.get(outcome, outcome) + (f" [{entry.cause}]" if entry.cause else "")
    title = escape(entry.message or outcome)
    text = f'<a href="#{escape(entry.nodeid)}">{escape(label)}</a>' if link else escape(label)
    return f'<td class="rg-cell rg-{escape(outcome)}" title="{title}">{text}</td>'


def matrix_html(verdicts: list[Verdict], link: bool = False) -> str:
    """Checks (grouped by requirement) x verdict columns; each cell's diagnosis or reason shows on
    hover, and with `link` a click jumps to the check's entry in the same report."""
    verdicts = sorted(verdicts, key=_order)
    head = "".join(f"<th>{escape(column_label(v, verdicts))}</th>" for v in verdicts)
    states = "".join(f'<td class="rg-cell rg-{s.value}" title="{escape(s.meaning)}">{s.label}</td>'
                     for s in map(verdict_state, verdicts))
    by_row = [{(c.requirement, c.check, c.item): c for c in v.checks} for v in verdicts]
    body = []
    for row in _rows(verdicts):
        requirement, check, item = row
        name = f"{check}[{item}]" if item else (check or "(no check ran)")
        declared = requirements.get(requirement)  # a requirement of checks this process does not know: none
        proves = f' title="{escape(declared.proves)}"' if declared else ""
        body.append(f"<tr><td{proves}>{escape(requirement)}</td><td>{escape(name)}</td>"
                    + "".join(_cell(v, checks, row, link) for v, checks in zip(verdicts, by_row)) + "</tr>")
    return (f'<table class="rg-matrix" id="rg-matrix"><thead><tr><th>requirement</th><th>check</th>{head}</tr>'
            f'<tr><th colspan="2">verdict</th>{states}</tr></thead><tbody>{"".join(body)}</tbody></table>')


def banner_html(state: str, verdicts: list[Verdict]) -> str:
    """What kind of run this report is from: still running (or killed), interrupted, complete;
    and for a complete one, how many variants are in each verdict state."""
    by_state: dict[State, list[str]] = {}
    for v in verdicts:
        by_state.setdefault(verdict_state(v), []).append(v.variant)
    if state == "complete":
        text = "Complete run: " + ("; ".join(f"{s.label} {', '.join(by_state[s])}" for s in State if s in by_state)
                                   or "no variant")
        css = next((f"rg-{s.value}" for s in (State.FAILED, State.NOT_VALIDATED) if s in by_state), "rg-passed")
    elif state == "interrupted":
        text, css = "PARTIAL: the run was interrupted; the results below are incomplete and no verdict passes", "rg-partial"
    else:
        text, css = ("PARTIAL: the run had not finished when this report was written; if it is not running any "
                     "more it was killed or crashed", "rg-partial")
    return f'<div class="rg-banner {css}" id="rg-banner">{escape(text)}</div>'


def review_html(review: Review) -> str:
    """The promotion review under a variant's state: its one line, and every change on a click."""
    lines = "".join(f"<li>{escape(line.strip())}</li>" for line in review.lines()[3:])
    return (f'<div class="rg-review" data-variant="{escape(review.variant)}">{escape(review.headline())}'
            f'<details><summary>the whole review</summary><ul>{lines}</ul></details></div>')


def summary_html(verdicts: list[Verdict], review_of: Callable[[Verdict], Review | None] = lambda v: None) -> str:
    """What to do, per variant, before any detail: its verdict state, what changed since the
    promoted image (`review_of`), then at most a few lines: its failures with their causes, then
    what was not validated, grouped by why; and the Modal GPU-seconds a matrix used."""
    blocks = []
    for v in sorted(verdicts, key=_order):
        problems = judge(v)
        state, lines = state_of(problems), summary(problems)
        shown = lines[:SUMMARY_LINES] + ([f"and {len(lines) - SUMMARY_LINES} more: see the matrix"]
                                         if len(lines) > SUMMARY_LINES else [])
        items = "".join(f"<li>{escape(line)}</li>" for line in shown)
        review = review_of(v)
        blocks.append(f'<div class="rg-verdict rg-{state.value}" data-variant="{escape(v.variant)}" '
                      f'data-state="{state.value}"><b>{escape(column_label(v, verdicts))}: {state.label}</b>: '
                      f'{escape(state.meaning)}{review_html(review) if review else ""}'
                      f'{f"<ul>{items}</ul>" if items else ""}</div>')
    used = gpu_seconds(verdicts)
    usage = (f'<p class="rg-problems" id="rg-gpu-seconds">Modal GPU-seconds: '
             f'{escape(", ".join(f"{gpu} {s} s" for gpu, s in used.items()))}</p>') if used else ""
    return f'<div id="rg-summary">{"".join(blocks)}</div>{usage}'


def speedup_chart(name: str, figure: dict) -> str:
    """Inline SVG of a timed gate: each repeat's baseline and candidate seconds as bars, and the
    paired speedups against the threshold."""
    base, cand = figure["baseline"]["samples_s"], figure["candidate"]["samples_s"]
    ratios, threshold = figure["paired_speedups"], figure["threshold"]
    width, bar_h, gap = 560, 10, 6
    longest = max(base + cand) or 1
    rows = []
    for i, (b, c) in enumerate(zip(base, cand)):
        y = 24 + i * (2 * bar_h + gap)
        for j, (value, colour, what) in enumerate(((b, "#8aa", "baseline"), (c, "#3a7", "candidate"))):
            w = value / longest * 300
            rows.append(f'<rect x="90" y="{y + j * bar_h}" width="{w:.1f}" height="{bar_h - 1}" fill="{colour}">'
                        f'<title>repeat {i + 1} {what}: {value:.2f} s</title></rect>'
                        f'<text x="{94 + w:.1f}" y="{y + j * bar_h + 8}" font-size="9">{value:.2f} s</text>')
        rows.append(f'<text x="4" y="{y + bar_h + 3}" font-size="10">repeat {i + 1}</text>')
    top = 24 + len(base) * (2 * bar_h + gap) + 16
    scale_max = max(ratios + [threshold]) * 1.2
    x = lambda r: 90 + r / scale_max * 440  # noqa: E731
    dots = "".join(f'<circle cx="{x(r):.1f}" cy="{top + 10}" r="4" fill="#3a7"><title>{r:.2f}x</title></circle>' for r in ratios)
    height = top + 40
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" class="rg-chart" '
            f'font-family="sans-serif"><text x="4" y="14" font-size="12" font-weight="bold">{escape(name)}: '
            f'{figure["speedup"]:.2f}x (threshold {threshold}x, {escape(figure["verdict"])})</text>'
            f'<text x="410" y="14" font-size="10" fill="#8aa">baseline</text>'
            f'<text x="470" y="14" font-size="10" fill="#3a7">candidate</text>{"".join(rows)}'
            f'<line x1="90" y1="{top + 10}" x2="530" y2="{top + 10}" stroke="#999"/>'
            f'<line x1="{x(threshold):.1f}" y1="{top}" x2="{x(threshold):.1f}" y2="{top + 20}" stroke="#c33" '
            f'stroke-dasharray="3,2"><title>threshold {threshold}x</title></line>'
            f'<text x="4" y="{top + 14}" font-size="10">speedups</text>{dots}'
            f'<text x="{x(threshold):.1f}" y="{top + 32}" font-size="9" fill="#c33" text-anchor="middle">{threshold}x</text>'
            f'</svg>')


def thumbnail(png: bytes, width: int = THUMBNAIL_WIDTH) -> bytes:
    """A PNG no wider than `width`, for embedding in a report that must open quickly."""
    image = Image.open(io.BytesIO(png))
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width)))
    out = io.BytesIO()
    image.save(out, "PNG", optimize=True)
    return out.getvalue()


def comparison_html(name: str, pictures: list[tuple[str, bytes]]) -> str:
    """A mismatch at a glance: the new picture, its reference and their difference, side by side."""
    cells = "".join(f'<figure style="display:inline-block;margin:4px"><img class="rg-compare" alt="{escape(part)}" '
                    f'src="data:image/png;base64,{base64.b64encode(thumbnail(png, 320)).decode()}">'
                    f"<figcaption>{escape(part)}</figcaption></figure>" for part, png in pictures)
    return f'<div class="rg-comparison"><b>{escape(name)}</b>: {" / ".join(p for p, _ in pictures)}<br>{cells}</div>'


def environment_html(hosts: list[dict]) -> str:
    head = "".join(f"<th>{escape(label)}</th>" for _, label in HOST_ROWS)
    rows = "".join("<tr>" + "".join(f"<td>{escape(str(h.get(key, '')))}</td>" for key, _ in HOST_ROWS) + "</tr>"
                   for h in hosts)
    return f'<table class="rg-env"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def figures_html(verdicts: list[Verdict]) -> str:
    rows = [(column_label(v, verdicts), c.check, name, f) for v in verdicts for c in v.checks for name, f in c.figures.items()]
    if not rows:
        return ""
    body = "".join(f"<tr><td>{escape(col)}</td><td>{escape(check)}</td><td>{escape(name)}</td>"
                   f"<td>{f.get('speedup', '')}x</td><td>{f.get('threshold', '')}x</td><td>{escape(str(f.get('verdict', '')))}</td></tr>"
                   for col, check, name, f in rows)
    return ('<table class="rg-env"><thead><tr><th>variant \u00b7 GPU type</th><th>check</th><th>figure</th>'
            f'<th>speedup (median)</th><th>threshold</th><th>verdict</th></tr></thead><tbody>{body}</tbody></table>')


def platform_html(verdicts: list[Verdict]) -> str:
    lines = platform_differences(verdicts)
    if not lines:
        return "<p>none: no check fails under gVisor that passes natively with the same image</p>"
    return '<ul class="rg-problems" id="rg-platform">' + "".join(f"<li>{escape(line)}</li>" for line in lines) + "</ul>"


def merged_html(verdicts: list[Verdict], review_of: Callable[[Verdict], Review | None] = lambda v: None) -> str:
    """One self-contained page: variant x GPU type x check, from verdicts of several hosts, each
    with what changed since its variant's promoted image (`review_of`)."""
    hosts = list({(v.host.get("host"), v.host.get("gpu_type"), v.host.get("sandbox_runtime")): v.host
                  for v in verdicts}.values())
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    states = [s.label for s in State if s in {verdict_state(v) for v in verdicts}]
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>rendergate: merged verdicts</title>'
            f'<style>{CSS} body {{ font: 14px sans-serif; margin: 16px; }}</style></head><body>'
            f'<h1>rendergate: merged verdicts</h1><p>{len(verdicts)} verdicts from {len(hosts)} hosts, merged {generated}; '
            f'verdict states: {", ".join(states)}</p>'
            f'<h2>What to do</h2>{summary_html(verdicts, review_of)}'
            f'<h2>Hosts</h2>{environment_html(hosts)}<h2>Matrix</h2>{matrix_html(verdicts)}'
            f'<h2>Platform differences</h2>{platform_html(verdicts)}<h2>Figures</h2>{figures_html(verdicts) or "<p>none</p>"}'
            f'</body></html>')


MUTATION_CSS = """
.rg-mutants { border-collapse: collapse; font: 13px sans-serif; }
.rg-mutants th, .rg-mutants td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
.rg-root-caused { background: #c8f0c8; } .rg-unknown-cause { background: #fbe3a4; }
.rg-another-cause, .rg-undetected, .rg-wrong-advice { background: #f5b5b5; } .rg-wrong-kind { background: #fbd3a4; } .rg-not-built, .rg-not-judged { background: #eee; color: #777; }
"""


def mutation_html(mutation: Mutation) -> str:
    """The page of one mutation run (rendergate/mutation.py): its scores, then each mutant with
    what failed and the line the reviewer would have read; the undetected ones first, for triage."""
    from rendergate.mutation.judging import Finding
    scores = mutation.scores()

    def share(part: int, whole: int) -> str:
        return f"{part}/{whole} ({100 * part / whole:.0f}%)" if whole else "none"

    worst = (Finding.UNDETECTED, Finding.WRONG_ADVICE, Finding.OTHER_CAUSE, Finding.WRONG_KIND)
    ordered = sorted(mutation.results, key=lambda r: (worst.index(r.finding) if r.finding in worst else len(worst), r.mutant.id))
    rows = []
    for r in ordered:
        lines = "".join(f"<li><b>{escape(f.check)}</b>: {escape(f.line)}"
                        + (f" <i>(the image has {escape(', '.join(f.contradicted))})</i>" if f.contradicted else "")
                        + "</li>" for f in r.failures)
        said = f"<ul>{lines}</ul>" if lines else escape(r.note or "every check that did not fail on the good image passed")
        css = "rg-" + r.finding.value.replace(" ", "-")
        rows.append(f'<tr class="{css}" data-finding="{escape(r.finding.value)}"><td>{escape(r.mutant.id)}</td>'
                    f"<td>{escape(r.mutant.kind.value)}</td><td><code>/{escape(r.mutant.path)}</code>"
                    + (f"<br>{escape(r.mutant.detail)}" if r.mutant.detail else "") + "</td>"
                    f"<td>{escape(r.mutant.component)}</td><td>{escape(r.finding.value)}</td><td>{said}</td>"
                    f"<td>{r.seconds:.0f} s</td></tr>")
    excluded = "; ".join(f"{n} {why}" for why, n in mutation.not_mutated.items()) or "none"
    status = "complete" if mutation.complete else "PARTIAL: the run did not finish; the scores cover the mutants judged so far"
    baseline = (f"{escape(mutation.baseline_state)}" + (f" (already failing: {escape(', '.join(mutation.baseline_failures))};"
                                                         " mutants are judged by the other checks)" if mutation.baseline_failures else ""))
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>rendergate mutate: {escape(mutation.variant)}</title>'
            f'<style>{CSS}{MUTATION_CSS} body {{ font: 14px sans-serif; margin: 16px; }}</style></head><body>'
            f'<h1>rendergate mutate: {escape(mutation.variant)}</h1>'
            f'<div class="rg-banner {"rg-passed" if mutation.complete else "rg-partial"}" id="rg-banner">{escape(status)}</div>'
            f'<p id="rg-scores"><b>detected</b> {share(scores["detected"], scores["judged"])} of the mutants judged; '
            f'<b>root-caused</b> {share(scores["root_caused"], scores["detected"])} of those detected (a line names the '
            f'mutated file, a link to it, its package or wheel, and the kind of fault planted, and advises nothing the image '
            f'contradicts); <b>named as another kind of fault</b>: {scores["wrong_kind"]}; <b>another cause named</b>: '
            f'{scores["another_cause"]}; <b>wrong advice</b> (to install what the image has): {scores["wrong_advice"]}</p>'
            f'<p>Image {escape(mutation.image)} ({escape(mutation.image_id)}), seed {mutation.seed}, '
            f'{mutation.asked} mutants asked, {scores["mutants"]} planted. The suites on the good image: {baseline}. '
            f'They used {mutation.used_files} of its files, {mutation.mutable_files} of them mutable (in {mutation.components} '
            f'components); not mutated: {escape(excluded)}. '
            f'Started {escape(mutation.started)}, finished {escape(mutation.finished or "-")}.</p>'
            f'<table class="rg-mutants" id="rg-mutants"><thead><tr><th>mutant</th><th>defect</th><th>path</th>'
            f'<th>component</th><th>finding</th><th>what failed, and its line</th><th>time</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></body></html>')
