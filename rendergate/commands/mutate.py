"""`rendergate mutate VARIANT [--n 40] [--seed 1] [--allow-no-gpu]`: plant single defects in copies of
the variant's image, from the files its checks use; score what the suites detect and root-cause."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from rendergate.commands.common import builder, variants
from rendergate.core.jsonfile import write_whole
from rendergate.core.manifest import ManifestError, positive
from rendergate.core.runstate import interrupt_on_sigterm
from rendergate.engines.docker_engine import Engine, obtain
from rendergate.engines.progress import BuildProgress
from rendergate.mutation.run import Mutation, Suite, mutate
from rendergate.mutation.trace import MutationError
from rendergate.pages import mutation_html


def add(sub) -> None:
    command = sub.add_parser("mutate", help="mutation testing: how many single-defect copies of the image the suites "
                                            "catch, and whether their line names the defect")
    command.add_argument("variant")
    command.add_argument("--n", type=positive(int), default=40, help="how many mutants (default 40)")
    command.add_argument("--seed", type=int, default=1, help="which ones: the same seed plants the same mutants (default 1)")
    command.add_argument("--allow-no-gpu", action="store_true", help="as for the suites: GPU checks not validated, not failed")


def run(args) -> int:
    """reports/mutate/VARIANT.json and .html, rewritten after each mutant; the suites' own reports
    of each run under reports/mutate/VARIANT/."""
    variant = variants(args, [args.variant])[args.variant]
    if not variant.image_ref:
        raise ManifestError(f"{args.variant} is checked on the host itself: mutation testing needs an image")
    engine = Engine()
    with BuildProgress(stream=sys.stdout) as progress:
        obtain(engine, variant, variant.image_ref, builder(args, engine, progress), progress)
    out = Path(args.reports_dir) / "mutate"

    def save(mutation: Mutation) -> None:
        """Each file replaced whole: an interrupt never leaves half a page."""
        for suffix, text in ((".json", json.dumps(mutation.to_json(), indent=1)), (".html", mutation_html(mutation))):
            write_whole(out / f"{variant.name}{suffix}", text)

    suite = Suite(Path(args.images_dir), variant, args.allow_no_gpu, args.base_image)
    interrupt_on_sigterm()  # CI cancelling the job: the suite run in flight is ended, the mutant image removed
    try:
        done = mutate(engine, suite, variant.image_ref, args.n, args.seed, out / variant.name, save,
                      say=lambda line: print(line, flush=True))
    except MutationError as e:
        print(f"rendergate mutate: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rendergate mutate: interrupted; {out / (variant.name + '.html')} holds the mutants judged so far (not complete)",
              file=sys.stderr)
        return 130
    scores = done.scores()
    print(f"{variant.name}: detected {scores['detected']}/{scores['judged']}, root-caused {scores['root_caused']}/"
          f"{scores['detected']} of those (the right file and kind of fault), the wrong kind for {scores['wrong_kind']}, "
          f"another cause named for {scores['another_cause']}, wrong advice for {scores['wrong_advice']}; "
          f"wrote {out / (variant.name + '.html')} and {out / (variant.name + '.json')}")
    return 0
