"""A mutation run: the traced good run, the baseline, each mutant built, validated by the whole
variant suite and judged, the results saved after each; an interrupt ends the run in flight
and removes its image."""
from __future__ import annotations

import io
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import docker

from rendergate.core import judging, outcomes, times
from rendergate.core import verdict as verdicts
from rendergate.core.assets import SUITES
from rendergate.core.manifest import Variant
from rendergate.core.verdict import Verdict
from rendergate.engines.docker_engine import Engine
from rendergate.mutation.judging import Failure, Finding, MutantResult, failed_checks, installed_of, judge_mutant
from rendergate.mutation.operators import Mutant
from rendergate.mutation.planning import plan
from rendergate.mutation.trace import FileTrace, MutationError, image_attrs, image_layers, not_mutated_because

RUN_TIMEOUT = 1800  # one variant suite on one mutant, at most (seconds)
READS_EVERY_FILE = "reads_every_file"  # the mark of checks that read every file of the image (files_intact)


@dataclass
class Suite:
    """How the variant's suites are run on an image: as `make validate` runs them, on one variant."""
    images_dir: Path
    variant: Variant
    allow_no_gpu: bool
    base_image: str | None

    def run(self, image: str, image_id: str, reports_dir: Path, *options: str) -> Verdict | None:
        """The verdict of one full run of the variant's suites on `image` (None: no complete
        verdict about that very image came); `options`: more of pytest's."""
        shutil.rmtree(reports_dir, ignore_errors=True)  # never an earlier run's verdict
        reports_dir.mkdir(parents=True)
        command = [sys.executable, "-m", "pytest", str(SUITES), f"--images-dir={self.images_dir}",
                   f"--variant={self.variant.name}", f"--image={image}", f"--reports-dir={reports_dir}",
                   "-n", "auto", "-p", "no:cacheprovider", "-q", "--no-sbom"]
        command += ["--allow-no-gpu"] if self.allow_no_gpu else []
        command += [f"--base-image={self.base_image}"] if self.base_image else []
        command += list(options)
        with (reports_dir / "pytest.log").open("w") as log:
            # Its own session: a Ctrl-C reaches this process only, which then ends the run once.
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                process.wait(timeout=RUN_TIMEOUT)
            except BaseException as e:  # timed out, or interrupted: the run ends as a run does, removing its container
                _end(process)
                if not isinstance(e, subprocess.TimeoutExpired):
                    raise
                return None
        try:
            verdict = verdicts.load(reports_dir / "verdicts" / f"{self.variant.name}.json")
        except verdicts.VerdictError:
            return None
        return verdict if verdict.complete and (verdict.image or {}).get("digest") == image_id else None


def _end(process: subprocess.Popen) -> None:
    """SIGTERM, which the run takes as an interrupt (it removes its container), then, a minute
    later or on another interrupt, SIGKILL."""
    process.terminate()
    try:
        process.wait(timeout=60)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        process.kill()
        process.wait()


@dataclass
class Mutation:
    """One mutation run of a variant: what was used, the baseline, the mutants, the scores."""
    variant: str
    image: str
    image_id: str
    seed: int
    asked: int
    used_files: int = 0
    used_owners: list[str] = field(default_factory=list)  # the packages and distributions owning them (the promotion review marks these)
    mutable_files: int = 0
    components: int = 0  # of the mutable files
    not_mutated: dict[str, int] = field(default_factory=dict)  # reason -> files
    baseline_state: str = ""
    baseline_failures: list[str] = field(default_factory=list)
    results: list[MutantResult] = field(default_factory=list)
    complete: bool = False
    started: str = field(default_factory=times.now_iso)
    finished: str | None = None

    def scores(self) -> dict:
        judged = [r for r in self.results if r.finding not in (Finding.NOT_BUILT, Finding.NOT_JUDGED)]
        detected = [r for r in judged if r.finding is not Finding.UNDETECTED]
        root_caused = [r for r in detected if r.finding is Finding.ROOT_CAUSED]
        return {"mutants": len(self.results), "judged": len(judged), "detected": len(detected),
                "root_caused": len(root_caused),
                "wrong_kind": sum(r.finding is Finding.WRONG_KIND for r in detected),
                "another_cause": sum(r.finding is Finding.OTHER_CAUSE for r in detected),
                "wrong_advice": sum(r.finding is Finding.WRONG_ADVICE for r in detected),
                "detected_share": round(len(detected) / len(judged), 3) if judged else None,
                "root_caused_share": round(len(root_caused) / len(detected), 3) if detected else None}

    def to_json(self) -> dict:
        data = asdict(self)
        for result in data["results"]:
            del result["mutant"]["content"]  # the planted file: its detail says what it is
        data["scores"] = self.scores()
        return data


def mutate(engine: Engine, suite: Suite, image: str, count: int, seed: int, work: Path, save, say=print) -> Mutation:
    """Record what the suites use on `image`, plant `count` single-defect mutants in copies of it,
    run the suites on each (their reports under `work`), and hand the results to `save` at the
    start, after each mutant and at the end (an interrupted run leaves them, not complete). The
    good image is run under a tag of its own (it cannot move while traced); the mutant images are
    removed once judged."""
    info = image_attrs(engine, image)
    layers = image_layers(info)
    mutation = Mutation(suite.variant.name, image, info["Id"], seed, count)
    repository = f"rendergate-mutant/{suite.variant.build_tag.split('/', 1)[1].split(':')[0]}"
    save(mutation)
    try:
        say(f"recording what the checks use: the {mutation.variant} suites on {image} ({len(layers)} layers watched)")
        started = time.monotonic()
        engine.client.images.get(info["Id"]).tag(repository, "good")
        # Recorded without the checks that read every file (they would make every file "used"); the
        # baseline is then a run of them all, untraced.
        with FileTrace(layers) as trace:
            traced = suite.run(f"{repository}:good", info["Id"], work / "traced", "-m", f"not {READS_EVERY_FILE}")
        baseline = suite.run(f"{repository}:good", info["Id"], work / "good") if traced else None
        if baseline is None:
            raise MutationError(f"the suites gave no complete verdict on the good image {image}: see "
                                f"{work / ('good' if traced else 'traced') / 'pytest.log'}")
        if trace.lost_events:
            raise MutationError("the kernel dropped file events while recording: raise fs.inotify.max_queued_events and rerun")
        used = trace.used_files()
        candidates = []
        for f in used:
            why = not_mutated_because(f)
            if why:
                mutation.not_mutated[why] = mutation.not_mutated.get(why, 0) + 1
            else:
                candidates.append(f)
        mutation.used_files, mutation.mutable_files = len(used), len(candidates)
        mutation.used_owners = sorted({f.owner for f in used if f.owner})
        mutation.components = len({f.component for f in candidates})
        mutation.baseline_state = judging.state_of(judging.judge(baseline)).value
        mutation.baseline_failures = sorted(c.check for c in failed_checks(baseline))
        say(f"the good image: {outcomes.State(mutation.baseline_state).label} in {time.monotonic() - started:.0f} s; the checks "
            f"used {len(used)} of its files, {len(candidates)} of them (in {mutation.components} components) mutable"
            + "".join(f"; {n} not mutated: {why}" for why, n in mutation.not_mutated.items()))
        if mutation.baseline_failures:
            say(f"the good image already fails {', '.join(mutation.baseline_failures)}: mutants are judged by the other checks")
        aliases = trace.link_names()
        installed = installed_of(layers)
        mutants = [replace(m, aliases=tuple(sorted(aliases.get(m.path, ())))) for m in plan(candidates, count, seed)]
        save(mutation)
        for number, mutant in enumerate(mutants, 1):
            result = _try(engine, suite, mutant, info, f"{repository}:{mutant.id}", work, baseline, installed)
            mutation.results.append(result)
            save(mutation)
            said = f"; {result.failures[0].line}" if result.failures else (f": {result.note}" if result.note else "")
            say(f"[{number}/{len(mutants)}] {mutant.kind.value} /{mutant.path} ({mutant.component}): "
                f"{result.finding.value} in {result.seconds:.0f} s{said}")
        mutation.complete = True
    finally:
        _remove(engine, f"{repository}:good")
        mutation.finished = times.now_iso()
        save(mutation)
    return mutation


def _try(engine: Engine, suite: Suite, mutant: Mutant, info: dict, tag: str, work: Path, baseline: Verdict,
         installed: set[str]) -> MutantResult:
    started = time.monotonic()

    def result(finding: Finding, failures: list[Failure] | None = None, note: str = "") -> MutantResult:
        return MutantResult(mutant, finding, failures or [], note, time.monotonic() - started)

    try:
        try:
            built, _ = engine.client.images.build(
                fileobj=io.BytesIO(mutant.context(info["Id"], info["Config"].get("User") or "")), custom_context=True,
                tag=tag, rm=True, forcerm=True)
        except docker.errors.BuildError as e:
            return result(Finding.NOT_BUILT, note=str(e).splitlines()[0][:200])
        except docker.errors.DockerException as e:  # the engine refused it: this mutant, not the run
            return result(Finding.NOT_BUILT, note=f"{type(e).__name__}: {str(e).splitlines()[0][:200]}")
        verdict = suite.run(tag, built.id, work / mutant.id)
        if verdict is None:
            return result(Finding.NOT_JUDGED, note=f"the suites gave no complete verdict: see {work / mutant.id / 'pytest.log'}")
        return result(*judge_mutant(mutant, baseline, verdict, installed))
    finally:
        _remove(engine, tag)


def _remove(engine: Engine, tag: str) -> None:
    """The tag, and any container left of it (a suite run killed before it removed its own)."""
    try:
        for container in engine.client.containers.list(all=True, filters={"ancestor": tag}):
            container.remove(force=True)
        engine.client.images.remove(tag, force=True)
    except docker.errors.DockerException:
        pass
