"""The synthetic knowledge world: a seeded set of facts, a training corpus, and one probe task per tier.

Real benchmarks cannot be downloaded here and a random-weight model scores at chance, so the project builds its
own testbed: a small world whose facts a tiny model can learn in minutes, and probes in which each tier depends on
what its name says.

The world
    People, organisations, cities and countries, each named by one made-up word (one token of the word-level
    tokenizer, so a ~100k-parameter model can store them). Every person has a birth city and an employer; every
    organisation has a head-office city; every city lies in a country. People are split in two halves: *demo*
    people, for whom the corpus also shows question and chain forms, and *probe* people, on whom all three tiers
    are measured. The tiers therefore differ only in the form of the question, never in the facts behind it.

The corpus
    Every fact is written in several paraphrase templates (``STATEMENTS``), with the entity at different positions,
    so that a fact is stored in a form that can be extracted, not only continued. Demo people additionally get the
    question forms (``QUESTIONS``) and the two-hop chain forms (``CHAINS``); probe people never do.

Why each tier measures what its name says
    KM (memorization): "<person> was born in ___" / "<person> works for ___", the first statement template, which
    the corpus contains for that very person. Answering needs only recall of a trained string.
    KA (application): "Question: In which city was <person> born? Answer: ___". The question form was learned on
    demo people only; for a probe person it never occurs in training, so the model must apply a stored fact in a
    form it has seen only for other entities. In the zoo's world (``WorldSpec.ka = "paraphrase"``) the KA form is a
    statement template instead, "The birthplace of <person> is ___", likewise trained on demo people only: the
    fact follows the name directly, as in the trained forms, so a small model can apply it too.
    KR (reasoning): "Question: Where is the employer of <person> based? Answer: <person> works for <org>, which is
    based in <city>." (and the birth city -> country chain). Each choice is a two-step inference; the corpus
    holds each step as a separate fact, never the chain for a probe person. The three distractors each break
    exactly one link: (right org, wrong city), (wrong org with its own true city), (wrong org, right final city).
    A model that knows only the first hop can rule out two choices, one that knows only the second hop can rule
    out two others; only a model that holds *both* facts and composes them picks the answer reliably.
The three tier probes are 4-way multiple choice over entities of the same type (chance 0.25), scored by lm-eval's
summed log-likelihood of each choice. Beside them, the KM probe asked as generation (``strata_world_km_gen``: the
same prompts, the name produced greedily, exact match of its first word; in ``tier_map_all.yaml``).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# Paraphrase templates, one list per relation. The first template of each relation is the KM probe form.
STATEMENTS: dict[str, list[str]] = {
    "born": [
        "{p} was born in {c} .",
        "{p} is a native of {c} .",
        "The birthplace of {p} is {c} .",
        "{c} is the home town of {p} .",
    ],
    "works": [
        "{p} works for {o} .",
        "{p} is employed by {o} .",
        "The employer of {p} is {o} .",
        "{o} pays the salary of {p} .",
    ],
    "based": [
        "{o} is based in {c} .",
        "{o} has its head office in {c} .",
        "The head office of {o} is in {c} .",
    ],
    "country": [
        "{c} is a city in {k} .",
        "{c} lies in {k} .",
        "{k} is the country of {c} .",
    ],
}
# The synonym KA world (``WorldSpec.ka = "synonym"``): the fourth template of each relation is a relation-first
# statement every person is trained on, so that the KA template (``KA_TEMPLATE``, demo people only) differs from a
# form the person was trained in by its relation words alone.
SYNONYMS: dict[str, str] = {"born": "The home town of {p} is {c} .", "works": "The firm of {p} is {o} ."}
# Question forms (KA): shown in training for demo people only.
QUESTIONS: dict[str, str] = {
    "born": "Question : In which city was {p} born ? Answer :",
    "works": "Question : Which organisation does {p} work for ? Answer :",
}
# Two-hop chains (KR): question prefix and the chained answer; shown in training for demo people only.
CHAINS: dict[str, tuple[str, str]] = {
    "works_based": (
        "Question : Where is the employer of {p} based ? Answer :",
        "{p} works for {o} , which is based in {c} .",
    ),
    "born_country": ("Question : In which country was {p} born ? Answer :", "{p} was born in {c} , a city in {k} ."),
}

_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kr", "st", "tr", "sh"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ei", "ou"]
_CODAS = ["", "", "n", "r", "l", "s", "th", "x"]


@dataclass(frozen=True)
class WorldSpec:
    """Sizes of a world. The defaults are small enough for a ~100k-parameter model to learn on a CPU in minutes.

    ``syllables`` > 0 spells every name from that many syllable tokens (``SPELLING`` syllables per name of each
    type) instead of one made-up word per name: an entity is then a sequence no embedding row stands for, so its
    facts live in the block weights that quantization touches (the zoo's world, ``ZOO``)."""

    seed: int = 0
    people: int = 160
    orgs: int = 24
    cities: int = 16
    countries: int = 6
    syllables: int = 0
    demo: float = 0.5  # the share of people whose question and chain forms are trained (the rest are probed)
    # How often each person's lines recur per epoch, spread evenly over the people: a long tail of popularity, as
    # real knowledge has, so that a larger model learns rarer people and accuracy rises with N instead of jumping.
    # A level below 1 (1/k) is seen in one epoch of every k (``epoch_corpus``): a person met once in a whole run.
    repeats: tuple[float, ...] = (1,)
    # How people spread over the popularity levels: "even" (as many people at each level) or "zipf" (people at a
    # level inversely proportional to its repeats, as entity popularity on the web is: a few famous people, a long
    # tail seen once; every level then costs the same training tokens).
    popularity: str = "even"
    # Probe people per popularity level (0: every probe person). With "zipf" the tail holds far more people than an
    # evaluation needs; probing the same number at every level stratifies the probes by popularity (as PopQA does),
    # so a tier mean counts every level alike and rises by a step for each level a larger model learns.
    probed: int = 0
    # The KA probe: "question" (a question form trained on demo people only) or "paraphrase" (a statement template,
    # ``STATEMENTS[rel][KA_TEMPLATE]``, trained on demo people only; every other person never sees it), or
    # "synonym" (the same withheld template, while every person is trained in a relation-first statement of the
    # same shape, ``SYNONYMS``: applying the fact then needs the new relation words, not a new sentence shape).
    ka: str = "question"
    # People at each popularity level (with "zipf"): empty for the Zipf proportions, else one count per level, so
    # that a world can hold a level seen too rarely for any model to learn without the interference of a crowd.
    per_level: tuple[int, ...] = ()
    # The KR distractors: "one-each" (one wrong end, one consistent wrong first hop, one wrong first hop with the
    # right end) or "consistent" (one wrong end, two wrong first hops each followed by its own true end): a model
    # that knows only the second hop then rules out one choice, not two, so KR rests on the person's fact.
    kr: str = "one-each"


POPULARITY = ("even", "zipf")
KA_FORMS = ("question", "paraphrase", "synonym")
KR_FORMS = ("one-each", "consistent")
KA_TEMPLATE = 2  # "The birthplace of {p} is {c} ." / "The employer of {p} is {o} .": the fact after the name

# Syllables per name, by entity type, in a spelled world. People and organisations take three, so that the
# 32-syllable inventory gives 32,768 possible names; cities and countries two.
SPELLING = {"people": 3, "orgs": 3, "cities": 2, "countries": 2}

# The zoo's world (issue 15; docs/zoo.md has the pilots behind it). 4,400 people spelled from 32 syllables, 64
# organisations, 32 cities, 8 countries; half the people at each level are demo people. Eight popularity levels,
# from people seen once in a whole four-epoch run (a quarter of a copy per epoch) to 128 copies per epoch (512 in
# all), four times apart in the middle (1, 4, 16) so that each level is a size step: 1,280 people seen once, 640 at
# each level up to 16 copies, then Zipf (as many lines per level: 320, 160, 80). The crowd is capped, so the
# smallest model has room to learn the popular; people seen once are too rare for the largest to learn them all, so
# it stays below the ceiling. 40 probe people per level (640 items per tier). KA is the withheld relation-first
# template, beside a relation-first form every person is trained in (``ka = "synonym"``): the smallest model then
# applies what it knows (the paraphrase form lagged KM by a size step). KR's wrong first hops each lead to their
# own true end (``kr = "consistent"``), so only the person's fact answers a chain.
ZOO = WorldSpec(
    seed=0,
    people=4400,
    orgs=64,
    cities=32,
    countries=8,
    syllables=32,
    demo=0.5,
    repeats=(0.25, 0.5, 1, 4, 16, 32, 64, 128),
    popularity="zipf",
    per_level=(1280, 640, 640, 640, 640, 320, 160, 80),
    probed=40,
    ka="synonym",
    kr="consistent",
)
# The first Zipf world (the zoo shipped before it; docs/zoo.md): 20,400 people, eight Zipf levels 1 to 128 copies
# per epoch (80 people at 128, 10,240 seen once per epoch), the paraphrase KA probe.
ZOO_ZIPF = WorldSpec(
    seed=0,
    people=20400,
    orgs=64,
    cities=32,
    countries=8,
    syllables=32,
    demo=0.5,
    repeats=(1, 2, 4, 8, 16, 32, 64, 128),
    popularity="zipf",
    probed=40,
    ka="paraphrase",
)
# The first capacity world (the pilots in docs/zoo.md): 960 people, popularity 1 to 64 spread evenly, 3 epochs.
ZOO_EVEN = WorldSpec(
    seed=0, people=960, orgs=64, cities=32, countries=8, syllables=32, demo=0.5, repeats=(1, 2, 4, 8, 16, 32, 64)
)


@dataclass
class World:
    spec: WorldSpec
    people: list[str]
    orgs: list[str]
    cities: list[str]
    countries: list[str]
    born: dict[str, str]  # person -> city
    works: dict[str, str]  # person -> org
    based: dict[str, str]  # org -> city
    country: dict[str, str]  # city -> country
    demo: list[str]  # people whose question and chain forms are in the corpus
    probe: list[str]  # people on whom the tiers are measured
    repeats: dict[str, float] = field(default_factory=dict)  # person -> copies of their lines per epoch (default 1)


def _names(rng: random.Random, n: int, taken: set[str], syllables: tuple[int, int]) -> list[str]:
    """n unique capitalised pseudo-words, none in ``taken`` (which is updated)."""
    out: list[str] = []
    while len(out) < n:
        k = rng.randint(*syllables)
        word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(k)) + rng.choice(_CODAS)
        word = word.capitalize()
        if word not in taken:
            taken.add(word)
            out.append(word)
    return out


def syllable_inventory(spec: WorldSpec) -> list[str]:
    """The syllable tokens names are spelled from (empty for a one-token-per-name world); fixed by the seed."""
    if not spec.syllables:
        return []
    rng = random.Random(f"syllables:{spec.seed}")
    words = {w.capitalize() for w in _template_words()}  # "In" and "in" alike: no syllable may be a template word
    pool = sorted({(o + v).capitalize() for o in _ONSETS for v in _VOWELS} - words)
    if spec.syllables > len(pool):
        raise ValueError(f"a world can spell names from at most {len(pool)} syllables, not {spec.syllables}")
    return sorted(rng.sample(pool, spec.syllables))


def _spelled(rng: random.Random, n: int, taken: set[str], inventory: list[str], k: int) -> list[str]:
    """n unique names of k syllable tokens each (space-separated), none in ``taken`` (which is updated)."""
    if len(inventory) ** k < n + len(taken):
        raise ValueError(f"{len(inventory)} syllables cannot spell {n} distinct names of {k} syllables")
    out: list[str] = []
    while len(out) < n:
        name = " ".join(rng.choice(inventory) for _ in range(k))
        if name not in taken:
            taken.add(name)
            out.append(name)
    return out


def generate(spec: WorldSpec | None = None) -> World:
    """The world for ``spec``; the same spec always gives the same world."""
    spec = spec or WorldSpec()
    if spec.people < 4 or spec.orgs < 4 or spec.cities < 4 or spec.countries < 2:
        raise ValueError("a world needs >= 4 people, orgs and cities (4-way choices) and >= 2 countries")
    if spec.popularity not in POPULARITY:
        raise ValueError(f"popularity must be one of {', '.join(POPULARITY)}, not {spec.popularity!r}")
    if spec.ka not in KA_FORMS:
        raise ValueError(f"ka must be one of {', '.join(KA_FORMS)}, not {spec.ka!r}")
    if spec.kr not in KR_FORMS:
        raise ValueError(f"kr must be one of {', '.join(KR_FORMS)}, not {spec.kr!r}")
    if spec.per_level and (spec.popularity != "zipf" or len(spec.per_level) != len(spec.repeats)):
        raise ValueError("per_level needs popularity 'zipf' and one count per level of repeats")
    for r in spec.repeats:
        if r <= 0 or (r < 1 and abs(1 / r - round(1 / r)) > 1e-9) or (r >= 1 and r != int(r)):
            raise ValueError(f"a level's repeats must be a whole number or 1/k (seen in one epoch of k), not {r}")
    rng = random.Random(spec.seed)
    # Template words must never be entity names, or the tokenizer would merge a name with a function word.
    taken = set(_template_words())
    if spec.syllables:
        inv = syllable_inventory(spec)
        countries = _spelled(rng, spec.countries, taken, inv, SPELLING["countries"])
        cities = _spelled(rng, spec.cities, taken, inv, SPELLING["cities"])
        orgs = _spelled(rng, spec.orgs, taken, inv, SPELLING["orgs"])
        people = _spelled(rng, spec.people, taken, inv, SPELLING["people"])
    else:
        countries = _names(rng, spec.countries, taken, (2, 2))
        cities = _names(rng, spec.cities, taken, (2, 3))
        orgs = _names(rng, spec.orgs, taken, (3, 3))
        people = _names(rng, spec.people, taken, (2, 3))
    # Balanced assignments (round robin, then shuffled) so every value has enough holders to serve as a distractor
    # and no value is so frequent that a frequency prior alone scores above chance.
    country = dict(zip(cities, _balanced(rng, countries, len(cities)), strict=True))
    based = dict(zip(orgs, _balanced(rng, cities, len(orgs)), strict=True))
    born = dict(zip(people, _balanced(rng, cities, len(people)), strict=True))
    works = dict(zip(people, _balanced(rng, orgs, len(people)), strict=True))
    if spec.popularity == "zipf":
        return _zipf(rng, spec, World(spec, people, orgs, cities, countries, born, works, based, country, [], []))
    order = people[:]
    rng.shuffle(order)
    half = round(len(order) * spec.demo)
    world = World(spec, people, orgs, cities, countries, born, works, based, country, order[:half], order[half:])
    if len(spec.repeats) > 1:  # drawn last, so a world without a popularity tail is what it always was
        world.repeats = dict(zip(people, _balanced(rng, list(spec.repeats), len(people)), strict=True))
    if spec.probed:
        world.probe = _stratified(rng, world.probe, world.repeats, spec.probed)
    return world


def _zipf(rng: random.Random, spec: WorldSpec, world: World) -> World:
    """Popularity levels with people in inverse proportion to their repeats; demo and probe people split within
    each level, so both halves have the same popularity profile."""
    weights = [1 / r for r in spec.repeats]
    counts = [max(2, round(spec.people * w / sum(weights))) for w in weights]
    counts[0] += spec.people - sum(counts)  # rounding goes to the first level
    if spec.per_level:
        if sum(spec.per_level) != spec.people or min(spec.per_level) < 2:
            raise ValueError(f"per_level must hold >= 2 people per level and sum to people ({spec.people})")
        counts = list(spec.per_level)
    if counts[0] < 2:
        raise ValueError(f"{spec.people} people are too few for Zipf levels {spec.repeats}")
    order = world.people[:]
    rng.shuffle(order)
    start = 0
    for level, n in zip(spec.repeats, counts, strict=True):
        group = order[start : start + n]
        start += n
        half = round(n * spec.demo)
        world.demo += group[:half]
        world.probe += group[half:]
        world.repeats.update(dict.fromkeys(group, level))
    if spec.probed:
        world.probe = _stratified(rng, world.probe, world.repeats, spec.probed)
    return world


def _stratified(rng: random.Random, probe: list[str], repeats: dict[str, float], k: int) -> list[str]:
    """``k`` probe people from every popularity level (all of a level with fewer), in a seeded shuffled order so
    that any prefix of the probes (an evaluation ``--limit``) holds the levels alike."""
    by_level: dict[float, list[str]] = {}
    for p in probe:
        by_level.setdefault(repeats.get(p, 1), []).append(p)
    chosen = [p for level in sorted(by_level) for p in by_level[level][:k]]
    rng.shuffle(chosen)
    return chosen


def _balanced(rng: random.Random, values: list[T], n: int) -> list[T]:
    out = [values[i % len(values)] for i in range(n)]
    rng.shuffle(out)
    return out


# --- the training corpus ------------------------------------------------------------------------------------------


def statements(spec: WorldSpec) -> dict[str, list[str]]:
    """The paraphrase templates of a world: ``STATEMENTS``, with the synonym KA world's relation-first forms."""
    if spec.ka != "synonym":
        return STATEMENTS
    out = {rel: list(ts) for rel, ts in STATEMENTS.items()}
    for rel, template in SYNONYMS.items():
        out[rel][3] = template
    return out


def sparse(world: World) -> bool:
    """Whether some people are seen in only some epochs (a level below one repeat per epoch)."""
    return any(r < 1 for r in world.repeats.values())


def _copies(world: World, p: str, index: int, epoch: int | None) -> int:
    """Copies of person ``p``'s lines in ``epoch``: a level 1/k is seen in one epoch of every k, the people of the
    level spread over the epochs by their index; with ``epoch`` None (the world's lines, not an epoch) once."""
    r = world.repeats.get(p, 1)
    if r >= 1:
        return int(r)
    return 1 if epoch is None or (epoch + index) % round(1 / r) == 0 else 0


def corpus(world: World, epoch: int | None = None) -> list[str]:
    """All training lines of one epoch: every fact in every paraphrase; question and chain forms for demo people
    only. ``epoch`` matters only in a world with people seen in some epochs (``sparse``)."""
    lines: list[str] = []
    demo = set(world.demo)
    withheld = world.spec.ka in ("paraphrase", "synonym")
    templates = statements(world.spec)
    for n, p in enumerate(world.people):
        # With a statement KA probe, the KA template is shown for demo people only.
        keep = [i for i in range(len(templates["born"])) if p in demo or not withheld or i != KA_TEMPLATE]
        own = [templates["born"][i].format(p=p, c=world.born[p]) for i in keep]
        own += [templates["works"][i].format(p=p, o=world.works[p]) for i in keep]
        lines += own * _copies(world, p, n, epoch)
    for o in world.orgs:
        lines += [t.format(o=o, c=world.based[o]) for t in templates["based"]]
    for c in world.cities:
        lines += [t.format(c=c, k=world.country[c]) for t in templates["country"]]
    index = {p: n for n, p in enumerate(world.people)}
    for p in world.demo:
        lines += _qa_lines(world, p) * _copies(world, p, index[p], epoch)
    return lines


def calibration_text(world: World, n: int, seed: int = 0) -> list[str]:
    """``n`` distinct corpus lines in a seeded random order: a calibration source in the training distribution
    (GPTQ's Hessians are meant to see what the model was trained on), small enough to ship."""
    lines = list(dict.fromkeys(corpus(world)))
    random.Random(f"calibration:{seed}").shuffle(lines)
    return lines[:n]


def _qa_lines(world: World, p: str) -> list[str]:
    o, c = world.works[p], world.born[p]
    q_born, q_works = QUESTIONS["born"].format(p=p), QUESTIONS["works"].format(p=p)
    (q1, a1), (q2, a2) = CHAINS["works_based"], CHAINS["born_country"]
    return [
        f"{q_born} {c}",
        f"{q_works} {o}",
        f"{q1.format(p=p)} {a1.format(p=p, o=o, c=world.based[o])}",
        f"{q2.format(p=p)} {a2.format(p=p, c=c, k=world.country[c])}",
    ]


def _template_words(spec: WorldSpec | None = None) -> set[str]:
    """Every word of a world's templates (with no spec: the first worlds', which fix the syllable inventories)."""
    base = STATEMENTS if spec is None else statements(spec)
    templates = [t for ts in base.values() for t in ts] + list(QUESTIONS.values())
    templates += [part for pair in CHAINS.values() for part in pair]
    return {w for t in templates for w in t.split() if not w.startswith("{")}


def vocabulary(world: World) -> list[str]:
    """Every word the corpus and the probes can contain, sorted (the word-level tokenizer's vocabulary)."""
    if world.spec.syllables:
        return sorted(set(syllable_inventory(world.spec)) | _template_words(world.spec))
    words = set(world.people) | set(world.orgs) | set(world.cities) | set(world.countries)
    words |= _template_words(world.spec)
    return sorted(words)


# --- the probe tasks --------------------------------------------------------------------------------------------


def _distractors(rng: random.Random, pool: list[str], answer: str, k: int = 3) -> list[str]:
    return rng.sample([v for v in pool if v != answer], k)


def _item(rng: random.Random, query: str, answer: str, wrong: list[str], **meta: Any) -> dict[str, Any]:
    choices = [answer, *wrong]
    rng.shuffle(choices)
    return {"query": query, "choices": choices, "gold": choices.index(answer), **meta}


def probes(world: World) -> dict[str, list[dict[str, Any]]]:
    """The three probe tasks, keyed by tier; every item records the facts it rests on (``facts``)."""
    rng = random.Random(world.spec.seed + 1)
    km: list[dict[str, Any]] = []
    ka: list[dict[str, Any]] = []
    kr: list[dict[str, Any]] = []
    for p in world.probe:
        c, o = world.born[p], world.works[p]
        born_fact = STATEMENTS["born"][0].format(p=p, c=c)
        works_fact = STATEMENTS["works"][0].format(p=p, o=o)
        km.append(_item(rng, f"{p} was born in", c, _distractors(rng, world.cities, c), entity=p, facts=[born_fact]))
        km.append(_item(rng, f"{p} works for", o, _distractors(rng, world.orgs, o), entity=p, facts=[works_fact]))
        ka_born, ka_works = _ka_queries(world, p)
        ka.append(_item(rng, ka_born, c, _distractors(rng, world.cities, c), entity=p, facts=[born_fact]))
        ka.append(_item(rng, ka_works, o, _distractors(rng, world.orgs, o), entity=p, facts=[works_fact]))
        kr.append(_chain_item(rng, world, p, "works_based"))
        kr.append(_chain_item(rng, world, p, "born_country"))
    if world.repeats:  # each item says how often its person was seen, so accuracy can be read by popularity
        kind = float if sparse(world) else int  # one type in every row (the task loader keeps only such fields)
        for item in km + ka + kr:
            item["repeats"] = kind(world.repeats[item["entity"]])
    return {"KM": km, "KA": ka, "KR": kr}


def _ka_queries(world: World, p: str) -> tuple[str, str]:
    """The KA prompts for person ``p``: the question forms, or the KA statement template cut before its answer."""
    if world.spec.ka == "question":
        return QUESTIONS["born"].format(p=p), QUESTIONS["works"].format(p=p)
    born, works = STATEMENTS["born"][KA_TEMPLATE], STATEMENTS["works"][KA_TEMPLATE]
    return born.split("{c}")[0].format(p=p).rstrip(), works.split("{o}")[0].format(p=p).rstrip()


def _chain_item(rng: random.Random, world: World, p: str, kind: str) -> dict[str, Any]:
    """A two-hop item whose three distractors each break exactly one link of the chain (see module docstring)."""
    question, answer = CHAINS[kind]
    if kind == "works_based":
        first, hop1, hop2, pool1, pool2 = world.works[p], world.works, world.based, world.orgs, world.cities
        fill = lambda x, y: answer.format(p=p, o=x, c=y)  # noqa: E731
        facts = [STATEMENTS["works"][0].format(p=p, o=first), STATEMENTS["based"][0].format(o=first, c=hop2[first])]
    else:
        first, hop1, hop2, pool1, pool2 = world.born[p], world.born, world.country, world.cities, world.countries
        fill = lambda x, y: answer.format(p=p, c=x, k=y)  # noqa: E731
        facts = [STATEMENTS["born"][0].format(p=p, c=first), STATEMENTS["country"][0].format(c=first, k=hop2[first])]
    del hop1  # the first hop is the person's own fact, ``first``
    end = hop2[first]
    # Wrong first hops whose own second hop differs from the true end, so the "consistent but wrong" chain and the
    # "wrong first hop, right end" chain are both genuinely wrong.
    others = [x for x in pool1 if x != first and hop2[x] != end]
    wrong_mid, wrong_mid2 = rng.sample(others, 2)
    wrong_end = rng.choice([y for y in pool2 if y != end])
    if world.spec.kr == "consistent":  # both wrong first hops followed by their own true ends
        wrong = [fill(first, wrong_end), fill(wrong_mid, hop2[wrong_mid]), fill(wrong_mid2, hop2[wrong_mid2])]
    else:
        wrong = [fill(first, wrong_end), fill(wrong_mid, hop2[wrong_mid]), fill(wrong_mid2, end)]
    return _item(rng, question.format(p=p), fill(first, end), wrong, entity=p, facts=facts)


# --- writing the tasks for lm-eval -----------------------------------------------------------------------------

TASK_NAMES = {"KM": "strata_world_km", "KA": "strata_world_ka", "KR": "strata_world_kr"}
PROBE_FIELDS = ("query", "choices", "gold")


def task_yaml(name: str, data_file: str) -> str:
    """A local lm-eval multiple-choice task over a JSONL file next to it (loaded by calibrate.evaluate)."""
    return (
        f"task: {name}\n"
        "dataset_path: json\n"
        # lm-eval resolves data paths against the working directory, not the YAML; strata's loader reads the file
        # relative to the task folder (passed as TaskManager metadata) and validates every row.
        "custom_dataset: !function calibrate.evaluate.load_probe_dataset\n"
        f"dataset_kwargs:\n  data_file: {data_file}\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        'doc_to_text: "{{query}}"\n'
        "doc_to_choice: choices\n"
        "doc_to_target: gold\n"
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
        "metadata:\n  version: 1.0\n"
    )


GEN_TASK = "strata_world_km_gen"  # KM again, asked as generation: the model must produce the name, not pick it
GEN_FILTER = "first-word"
GEN_FILTER_SPELLED = "name"  # a spelled world's answer is several syllable tokens: every word before the full stop
_GEN_REGEX = {GEN_FILTER: "(\\\\S+)", GEN_FILTER_SPELLED: "(\\\\S+(?: \\\\S+)*)"}


def generation_filter(world: World) -> str:
    """The filter that cuts a generated answer to the name it should be (see ``generation_task_yaml``)."""
    return GEN_FILTER_SPELLED if world.spec.syllables else GEN_FILTER


def generation_probe(world: World) -> list[dict[str, Any]]:
    """The KM probe as generation: the same prompts and facts as the multiple-choice KM items, the answer to be
    produced (greedy) and scored by exact match of its first word. Draws no random numbers, so the other probes
    stay as they are."""
    rows: list[dict[str, Any]] = []
    for p in world.probe:
        c, o = world.born[p], world.works[p]
        rows.append({"query": f"{p} was born in", "answer": c, "entity": p,
                     "facts": [STATEMENTS["born"][0].format(p=p, c=c)]})  # fmt: skip
        rows.append({"query": f"{p} works for", "answer": o, "entity": p,
                     "facts": [STATEMENTS["works"][0].format(p=p, o=o)]})  # fmt: skip
    return rows


def generation_task_yaml(name: str, data_file: str, filter_name: str = GEN_FILTER) -> str:
    """A local lm-eval generation task: greedy decoding up to the sentence's end, the name kept by a regex filter
    (its first word, or in a spelled world its words up to the full stop), exact match against the answer."""
    return (
        f"task: {name}\n"
        "dataset_path: json\n"
        "custom_dataset: !function calibrate.evaluate.load_probe_dataset\n"
        f"dataset_kwargs:\n  data_file: {data_file}\n"
        "test_split: test\n"
        "output_type: generate_until\n"
        'doc_to_text: "{{query}}"\n'
        'doc_to_target: "{{answer}}"\n'
        'target_delimiter: " "\n'
        "generation_kwargs:\n"
        '  until: [".", "\\n"]\n'
        "  max_gen_toks: 4\n"
        "  do_sample: false\n"
        "filter_list:\n"
        f"  - name: {filter_name}\n"
        "    filter:\n"
        f'      - {{function: regex, regex_pattern: "{_GEN_REGEX[filter_name]}"}}\n'
        "      - {function: take_first}\n"
        "metric_list:\n  - metric: exact_match\n    aggregation: mean\n    higher_is_better: true\n"
        "metadata:\n  version: 1.0\n"
    )


def tier_map_yaml(
    include_path: str,
    items: dict[str, int],
    generation: int | None = None,
    filter_name: str = GEN_FILTER,
    ka: str = "question",
) -> str:
    """The world's tier map: the three multiple-choice probes, and with ``generation`` (its items) the generation
    KM probe too (``tier_map_all.yaml``: a map mixing task kinds; sweeps and fits use ``tier_map.yaml``)."""
    lines = [
        "# Tier map of the synthetic knowledge world (calibrate/world.py); written by `python -m calibrate.train`.",
        "schema_version: 1",
        f"include_path: {include_path}",
        "tasks:",
    ]
    why = {
        "KM": "recall of a trained fact in its trained form",
        "KA": f"a trained fact asked in a {'statement' if ka == 'paraphrase' else 'question'} form never seen for "
        "that person",
        "KR": "two-hop chain; each hop is a separate trained fact, the chain is never seen for that person",
    }
    for tier, name in TASK_NAMES.items():
        lines.append(
            f'  {name}: {{tier: {tier}, chance: 0.25, items: {items[tier]}, evidence: synthetic, why: "{why[tier]}"}}'
        )
    if generation is not None:
        lines.append(
            f"  {GEN_TASK}: {{tier: KM, chance: 0.0, items: {generation}, evidence: synthetic, metric: exact_match, "
            f'filter: {filter_name}, why: "{why["KM"]}, produced rather than picked"}}'
        )
    return "\n".join(lines) + "\n"


ALL_TIER_MAP = "tier_map_all.yaml"


def write_tasks(world: World, out_dir: str | Path, include_dir: str = "tasks") -> Path:
    """Write the tier map (``tier_map.yaml``) and its three multiple-choice tasks (YAML + JSONL) under ``out_dir``,
    and the generation KM task with ``tier_map_all.yaml`` (all four); return ``tier_map.yaml``."""
    out = Path(out_dir)
    task_dir = out / include_dir
    task_dir.mkdir(parents=True, exist_ok=True)
    items: dict[str, int] = {}
    for tier, rows in probes(world).items():
        name = TASK_NAMES[tier]
        with open(task_dir / f"{name}.jsonl", "w") as fh:
            for row in rows:
                fh.write(json.dumps(row) + "\n")
        (task_dir / f"{name}.yaml").write_text(task_yaml(name, f"{name}.jsonl"))
        items[tier] = len(rows)
    gen = generation_probe(world)
    with open(task_dir / f"{GEN_TASK}.jsonl", "w") as fh:
        for row in gen:
            fh.write(json.dumps(row) + "\n")
    flt = generation_filter(world)
    (task_dir / f"{GEN_TASK}.yaml").write_text(generation_task_yaml(GEN_TASK, f"{GEN_TASK}.jsonl", flt))
    ka = world.spec.ka
    (out / ALL_TIER_MAP).write_text(tier_map_yaml(include_dir, items, generation=len(gen), filter_name=flt, ka=ka))
    path = out / "tier_map.yaml"
    path.write_text(tier_map_yaml(include_dir, items, ka=ka))
    return path
