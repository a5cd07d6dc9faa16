"""The plan: which mutants, drawn from the files the checks used, spread over components and kinds
(each kind drawn first, rarest first), fixed by the seed."""
from __future__ import annotations

import random
from dataclasses import replace
from pathlib import PurePosixPath

from rendergate.mutation.operators import REAL, Kind, Mutant, UsedFile, _named_values, refusing_wrapper


def plan(used: list[UsedFile], count: int, seed: int) -> list[Mutant]:
    """`count` mutants: first one of each kind of defect that applies to some file (so that every
    operator is drawn on every image that has what it needs: a library with a stand-in, a
    configuration, a tool whose words are known; the rarest drawn first), then spread over the components the checks use
    (one file of each in turn, so a component of many files does not crowd out the others) and
    over the kinds (each file gets the kind used least so far that applies to it), in an order
    fixed by `seed`."""
    rng = random.Random(seed)
    by_component: dict[str, list[UsedFile]] = {}
    for f in used:
        by_component.setdefault(f.component, []).append(f)
    components = sorted(by_component)
    rng.shuffle(components)
    for files in by_component.values():
        rng.shuffle(files)
    used_kinds = dict.fromkeys(Kind, 0)
    mutants: list[Mutant] = []

    def take(kind: Kind, f: UsedFile) -> None:
        by_component[f.component].remove(f)
        used_kinds[kind] += 1
        mutants.append(_mutant(f"m{len(mutants) + 1:02d}", kind, f, used, rng))

    fitting = {kind: [f for component in components for f in by_component[component] if _fits(kind, f, used)] for kind in Kind}
    for kind in sorted(Kind, key=lambda k: len(fitting[k])):  # the rarest first: the files they need are few
        free = [f for f in fitting[kind] if f in by_component[f.component]]
        if free and len(mutants) < count:
            take(kind, rng.choice(free))
    while len(mutants) < count and any(by_component.values()):
        for component in components:
            if len(mutants) >= count or not by_component[component]:
                continue
            f = by_component[component][-1]
            kinds = [k for k in Kind if _fits(k, f, used) and (k, _target(k, f)) not in {(m.kind, m.path) for m in mutants}]
            if kinds:
                take(min(kinds, key=used_kinds.get), f)
            else:
                by_component[component].pop()
    return mutants


def _fits(kind: Kind, f: UsedFile, used: list[UsedFile]) -> bool:
    return kind.applies_to(f) and (kind is not Kind.REPLACE_LIBRARY or bool(_donors(f, used)))


def _donors(library: UsedFile, used: list[UsedFile]) -> list[UsedFile]:
    """The libraries of other components, of its class and machine, that could stand in its place."""
    return [f for f in used if f.library == library.library and f.component != library.component]


def _mutant(id: str, kind: Kind, f: UsedFile, used: list[UsedFile], rng: random.Random) -> Mutant:
    """The mutant of `kind` of `f`, with what it plants drawn by `rng`."""
    mutant = Mutant(id, kind, _target(kind, f), f.component)
    if kind is Kind.REPLACE_LIBRARY:
        donor = rng.choice(_donors(f, used)).path
        return replace(mutant, donor=donor, detail=f"replaced by /{donor}")
    if kind is Kind.CONFIG_CUT_SHORT:
        half = len(f.config.rstrip("\n")) // 2  # the line the middle falls in, cut in its own middle
        start = f.config.rfind("\n", 0, half) + 1
        end = f.config.find("\n", half)
        cut = start + max(1, ((end if end >= 0 else len(f.config)) - start) // 2)
        return replace(mutant, content=f.config[:cut], detail=f"cut short: {cut} of {len(f.config)} characters kept")
    if kind is Kind.CONFIG_NAMES_NOTHING:
        value = rng.choice(_named_values(f.config))
        named = PurePosixPath(value.group(1))
        nothing = str(named.with_name("rendergate-none-" + named.name)) if named.name else "/rendergate-none"
        return replace(mutant, content=f.config[:value.start(1)] + nothing + f.config[value.end(1):],
                       detail=f"{value.group(1)} changed to {nothing}")
    if kind is Kind.TOOL_REFUSES:
        return replace(mutant, content=refusing_wrapper(f.name, "/" + f.path + REAL),
                       detail=f"a wrapper that refuses the first option it is given, in {f.name}'s words")
    return mutant


def _target(kind: Kind, used: UsedFile) -> str:
    return used.folder if kind is Kind.DELETE_FOLDER else used.path
