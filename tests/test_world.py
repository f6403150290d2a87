"""The synthetic world: determinism, and that each tier's probes depend on what the tier's name says."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import pytest

from calibrate import tokenizer as wtok
from calibrate import world as W
from calibrate.evaluate import read_probe_rows
from strata.tiermap import load_tier_map


def test_same_seed_same_world_corpus_and_probes() -> None:
    a, b = W.generate(W.WorldSpec(seed=3)), W.generate(W.WorldSpec(seed=3))
    assert W.corpus(a) == W.corpus(b)
    assert W.probes(a) == W.probes(b)
    assert W.corpus(W.generate(W.WorldSpec(seed=4))) != W.corpus(a)


def test_names_are_unique_across_types_and_single_tokens() -> None:
    w = W.generate()
    names = w.people + w.orgs + w.cities + w.countries
    assert len(set(names)) == len(names)
    tok = wtok.build(W.vocabulary(w))
    for name in names:
        assert tok.encode(name).tokens == [name]
    unk = wtok.UNK
    for line in W.corpus(w):
        assert unk not in tok.encode(line).tokens


def test_km_probe_is_a_trained_sentence_for_that_person() -> None:
    w = W.generate()
    corpus = set(W.corpus(w))
    for item in W.probes(w)["KM"]:
        assert f"{item['query']} {item['choices'][item['gold']]} ." in corpus


def test_ka_question_form_never_appears_in_training_for_that_person() -> None:
    w = W.generate()
    text = W.corpus(w)
    probe_people = set(w.probe)
    for item in W.probes(w)["KA"]:
        assert item["entity"] in probe_people
        assert not any(line.startswith(item["query"]) for line in text)
        assert all(f in text for f in item["facts"])  # the fact itself is trained, in statement form
    # ... but the same question form is trained on other (demo) people, so the form itself can be learned.
    for form in W.QUESTIONS.values():
        prefix = form.split("{p}")[0]
        assert sum(line.startswith(prefix) for line in text) == len(w.demo)


def test_kr_items_rest_on_two_trained_facts_never_on_a_trained_chain() -> None:
    w = W.generate()
    text = W.corpus(w)
    lines = set(text)
    for item in W.probes(w)["KR"]:
        assert len(item["facts"]) == 2 and all(f in lines for f in item["facts"])
        answer = item["choices"][item["gold"]]
        assert not any(answer in line for line in text)  # the composed chain is never seen for this person
        assert len(set(item["choices"])) == 4


def test_kr_distractors_each_break_one_link() -> None:
    w = W.generate()
    for item in W.probes(w)["KR"]:
        if "employer" not in item["query"]:
            continue
        p = item["entity"]
        org, city = w.works[p], w.based[w.works[p]]
        parsed = [
            (c.split(" works for ")[1].split(" ,")[0], c.split("based in ")[1].rstrip(" .")) for c in item["choices"]
        ]
        right_org = [pc for pc in parsed if pc[0] == org]
        right_city = [pc for pc in parsed if pc[1] == city]
        consistent = [pc for pc in parsed if w.based[pc[0]] == pc[1]]
        # Knowing hop 1 alone leaves two choices, hop 2 alone leaves two; only both together single out the gold.
        assert len(right_org) == 2 and len(consistent) == 2 and len(right_city) == 2
        assert set(right_org) & set(consistent) == {(org, city)}


def test_probes_are_balanced_four_way_choices() -> None:
    w = W.generate()
    for tier, items in W.probes(w).items():
        assert len(items) == 2 * len(w.probe), tier
        assert all(len(i["choices"]) == 4 for i in items)
        golds = Counter(i["gold"] for i in items)
        assert min(golds.values()) > len(items) / 8  # gold position is shuffled, not fixed


def test_written_tasks_load_as_a_tier_map_with_valid_rows(tmp_path) -> None:
    w = W.generate()
    path = W.write_tasks(w, tmp_path)
    tm = load_tier_map(path)
    assert {s.tier for s in tm.tasks.values()} == {"KM", "KA", "KR"}
    assert all(s.chance == 0.25 and s.evidence == "synthetic" for s in tm.tasks.values())
    for name, spec in tm.tasks.items():
        rows = read_probe_rows(tmp_path / "tasks" / f"{name}.jsonl")
        assert len(rows) == spec.items
        first = json.loads((tmp_path / "tasks" / f"{name}.jsonl").read_text().splitlines()[0])
        assert first["facts"]  # the evidence each item rests on is written next to it


def test_a_tiny_training_run_is_deterministic_and_learns() -> None:
    from calibrate.train import Size, train

    tiny = Size(hidden=32, layers=1, intermediate=64, heads=2, kv_heads=1, head_dim=16, steps=12, lr=3e-3)
    spec = W.WorldSpec(seed=5, people=16, orgs=6, cities=6, countries=3)
    a = train(tiny, seed=5, batch_size=16, world_spec=spec, log_every=4, threads=1)
    b = train(tiny, seed=5, batch_size=16, world_spec=spec, log_every=4, threads=1)
    # the same seed reproduces the run; the bound forgives only summation-order rounding (threads, BLAS kernel)
    assert a.losses == pytest.approx(b.losses, rel=1e-6) and len(a.losses) == 3
    assert a.losses[-1] < a.losses[0]
    c = train(tiny, seed=6, batch_size=16, world_spec=spec, log_every=4, threads=1)
    assert c.losses != pytest.approx(a.losses, rel=1e-3)


def test_generation_probe_asks_the_km_facts_and_the_shipped_tasks_are_the_writers(tmp_path) -> None:
    w = W.generate()
    W.write_tasks(w, tmp_path)
    everything = load_tier_map(tmp_path / W.ALL_TIER_MAP)
    gen = everything.tasks[W.GEN_TASK]
    assert (gen.tier, gen.metric, gen.filter, gen.chance) == ("KM", "exact_match", W.GEN_FILTER, 0.0)
    rows = read_probe_rows(tmp_path / "tasks" / f"{W.GEN_TASK}.jsonl")
    km = W.probes(w)["KM"]
    assert len(rows) == gen.items == len(km)
    assert [(r["query"], r["answer"]) for r in rows] == [(i["query"], i["choices"][i["gold"]]) for i in km]
    assert set(load_tier_map(tmp_path / "tier_map.yaml").tasks) == set(W.TASK_NAMES.values())  # sweeps: unchanged
    shipped = Path(__file__).resolve().parents[1] / "examples" / "models" / "strata-world-xs"
    for f in sorted((tmp_path / "tasks").iterdir()):  # the checkpoint's tasks are what the world writer writes
        assert (shipped / "tasks" / f.name).read_text() == f.read_text(), f.name
    assert (shipped / W.ALL_TIER_MAP).read_text() == (tmp_path / W.ALL_TIER_MAP).read_text()


def test_spelled_world_names_are_syllable_sequences_and_popularity_is_a_long_tail() -> None:
    spec = W.WorldSpec(seed=2, people=40, orgs=8, cities=8, countries=3, syllables=12, demo=0.25, repeats=(1, 4))
    w = W.generate(spec)
    assert W.generate(spec) == w  # the same spec, the same world
    inventory = set(W.syllable_inventory(spec))
    assert len(inventory) == 12 and not inventory & W._template_words()
    tok = wtok.build(W.vocabulary(w))
    for kind, names in (("people", w.people), ("orgs", w.orgs), ("cities", w.cities), ("countries", w.countries)):
        for name in names:  # no embedding row stands for an entity: it is spelled from shared syllables
            assert tok.encode(name).tokens == name.split() and len(name.split()) == W.SPELLING[kind]
    names = w.people + w.orgs + w.cities + w.countries
    assert len(set(names)) == len(names)
    assert (len(w.demo), len(w.probe)) == (10, 30)
    lines = W.corpus(w)
    assert wtok.UNK not in {t for line in lines for t in tok.encode(line).tokens}
    for p in w.people:  # each person's lines recur as often as their popularity says
        assert lines.count(W.STATEMENTS["born"][0].format(p=p, c=w.born[p])) == w.repeats[p]
    assert sorted(set(w.repeats.values())) == [1, 4]
    assert all(item["repeats"] == w.repeats[item["entity"]] for items in W.probes(w).values() for item in items)
    # a world without a popularity tail is the world it always was (the first zoo's checkpoints stay reproducible)
    assert W.generate(W.WorldSpec(seed=3)).repeats == {}


def test_zipf_world_stratifies_probes_and_withholds_the_paraphrase_ka_form() -> None:
    spec = W.WorldSpec(seed=4, people=700, orgs=8, cities=8, countries=3, syllables=16, demo=0.5,
                       repeats=(1, 2, 4, 8), popularity="zipf", probed=5, ka="paraphrase")  # fmt: skip
    w = W.generate(spec)
    assert W.generate(spec) == w
    levels = {r: [p for p in w.people if w.repeats[p] == r] for r in spec.repeats}
    # people at a level in inverse proportion to its repeats: every level costs the same training lines
    assert [len(v) for v in levels.values()] == [373, 187, 93, 47]
    for r, group in levels.items():  # demo and probe halves with the same popularity profile
        assert abs(sum(p in set(w.demo) for p in group) - len(group) / 2) <= 0.5, r
    assert sorted(w.repeats[p] for p in w.probe) == sorted([1, 2, 4, 8] * 5)  # 5 probed per level
    assert {w.repeats[p] for p in w.probe[:8]} != {1}  # shuffled: a prefix holds several levels
    lines = set(W.corpus(w))
    demo = set(w.demo)
    ka = W.probes(w)["KA"]
    for item in ka:
        p = item["entity"]
        assert p not in demo and item["query"].startswith("The ") and item["query"].endswith(" is")
        assert not any(line.startswith(item["query"] + " ") for line in lines)  # never seen for this person
        assert W.STATEMENTS["born"][0].format(p=p, c=w.born[p]) in lines  # but the fact itself is trained
    d = w.demo[0]
    assert W.STATEMENTS["born"][W.KA_TEMPLATE].format(p=d, c=w.born[d]) in lines  # the form is learnable
    with pytest.raises(ValueError, match="popularity must be one of"):
        W.generate(W.WorldSpec(popularity="pareto"))
    with pytest.raises(ValueError, match="ka must be one of"):
        W.generate(W.WorldSpec(ka="cloze"))


def test_capacity_world_levels_rarer_than_an_epoch_synonym_ka_and_consistent_kr() -> None:
    """The zoo's world: explicit people per level, levels seen in one epoch of k, the synonym KA form, and the KR
    distractor variant in which knowing only the second hop rules out a single choice."""
    spec = W.WorldSpec(seed=6, people=60, orgs=8, cities=8, countries=3, syllables=16, demo=0.5,
                       repeats=(0.25, 0.5, 1, 4), popularity="zipf", per_level=(20, 20, 12, 8), probed=3,
                       ka="synonym", kr="consistent")  # fmt: skip
    w = W.generate(spec)
    assert W.generate(spec) == w and W.sparse(w) and not W.sparse(W.generate(W.ZOO_ZIPF))
    assert [sum(w.repeats[p] == r for p in w.people) for r in spec.repeats] == [20, 20, 12, 8]
    born0 = {p: W.STATEMENTS["born"][0].format(p=p, c=w.born[p]) for p in w.people}
    epochs = [W.corpus(w, e) for e in range(4)]
    for p in w.people:  # a level 1/k appears in one epoch of every k, a whole level r in every epoch r times
        seen = [lines.count(born0[p]) for lines in epochs]
        assert seen == [int(w.repeats[p])] * 4 if w.repeats[p] >= 1 else sum(seen) == round(4 * w.repeats[p])
    assert W.corpus(w).count(born0[w.people[0]]) == max(1, int(w.repeats[w.people[0]]))  # the world's lines: once
    demo, lines = set(w.demo), set(W.corpus(w))
    for item in W.probes(w)["KA"]:
        p = item["entity"]
        assert p not in demo and not any(line.startswith(item["query"] + " ") for line in lines)
        if "birthplace" in item["query"]:  # the person is trained in a relation-first form of the same shape
            assert W.SYNONYMS["born"].format(p=p, c=w.born[p]) in lines
        assert isinstance(item["repeats"], float)  # one type in every row, or the task loader drops the field
    assert "firm" in W.vocabulary(w) and "firm" not in W.vocabulary(W.generate(W.ZOO_ZIPF))
    for item in W.probes(w)["KR"]:
        if "employer" not in item["query"]:
            continue
        p = item["entity"]
        parsed = [(c.split(" works for ")[1].split(" ,")[0], c.split("based in ")[1].rstrip(" .")) for c in
                  item["choices"]]  # fmt: skip
        consistent = [pc for pc in parsed if w.based[pc[0]] == pc[1]]
        assert len(consistent) == 3 and sum(pc[0] == w.works[p] for pc in parsed) == 2
    with pytest.raises(ValueError, match="whole number or 1/k"):
        W.generate(W.WorldSpec(repeats=(0.3, 1)))
    with pytest.raises(ValueError, match="per_level must"):
        W.generate(W.WorldSpec(people=60, repeats=(1, 2), popularity="zipf", per_level=(50, 5)))
    with pytest.raises(ValueError, match="kr must be one of"):
        W.generate(W.WorldSpec(kr="three-hop"))


def test_a_sparse_world_trains_each_epoch_on_its_own_lines() -> None:
    from calibrate.train import Size, _epoch_batches, train

    seqs = [[i] for i in range(10)]
    plan = _epoch_batches(seqs, 4, 2, 0, spans=[(0, 6), (6, 4)])
    assert sorted(i for b in plan[:2] for i in b) == list(range(6)) and sorted(i for b in plan[2:] for i in b) == [
        6, 7, 8, 9]  # fmt: skip
    tiny = Size(hidden=32, layers=1, intermediate=64, heads=2, kv_heads=1, head_dim=16, steps=0, lr=3e-3, epochs=4)
    spec = W.WorldSpec(seed=5, people=24, orgs=6, cities=6, countries=3, syllables=8, repeats=(0.25, 1),
                       popularity="zipf", per_level=(12, 12))  # fmt: skip
    a = train(tiny, seed=5, batch_size=16, world_spec=spec, log_every=5, threads=1)
    b = train(tiny, seed=5, batch_size=16, world_spec=spec, log_every=5, threads=1)
    assert a.losses == b.losses and a.tokens == sum(
        len(line.split()) + 1 for e in range(4) for line in W.corpus(a.world, e))  # fmt: skip


def test_spelled_generation_task_keeps_the_whole_name(tmp_path) -> None:
    w = W.generate(W.WorldSpec(seed=2, people=8, orgs=4, cities=4, countries=2, syllables=8))
    W.write_tasks(w, tmp_path)
    gen = load_tier_map(tmp_path / W.ALL_TIER_MAP).tasks[W.GEN_TASK]
    assert gen.filter == W.GEN_FILTER_SPELLED
    import re

    import yaml

    cfg = yaml.safe_load((tmp_path / "tasks" / f"{W.GEN_TASK}.yaml").read_text().replace("!function", "#"))
    pattern = cfg["filter_list"][0]["filter"][0]["regex_pattern"]
    assert re.findall(pattern, " Ka Ro ")[0] == "Ka Ro"  # lm-eval's regex filter: findall, first match


def test_training_resumes_from_its_checkpoint_to_the_same_end(tmp_path) -> None:
    from calibrate.train import CHECKPOINT, Size, train

    tiny = Size(hidden=32, layers=1, intermediate=64, heads=2, kv_heads=1, head_dim=16, steps=0, lr=3e-3, epochs=3)
    spec = W.WorldSpec(seed=5, people=16, orgs=6, cities=6, countries=3, syllables=8)
    whole = train(tiny, seed=5, batch_size=16, world_spec=spec, log_every=2, threads=1)
    part = train(tiny, seed=5, batch_size=16, world_spec=spec, log_every=2, threads=1, checkpoint_dir=tmp_path,
                 checkpoint_every=2, stop_after=4)  # fmt: skip
    assert not part.finished and (tmp_path / CHECKPOINT).is_file()
    rest = train(tiny, seed=5, batch_size=16, world_spec=spec, log_every=2, threads=1, checkpoint_dir=tmp_path,
                 checkpoint_every=2)  # fmt: skip
    assert rest.finished and len(rest.losses) == len(whole.losses)
    # the bound forgives only summation-order rounding (threads, BLAS kernel)
    assert rest.losses == pytest.approx(whole.losses, rel=1e-5)
    assert rest.tokens == whole.tokens


def test_epochs_override_needs_a_zoo_size(tmp_path, capsys) -> None:
    from calibrate.train import main

    with pytest.raises(SystemExit) as exc:
        main(["--size", "xs", "--epochs", "2", "--out", str(tmp_path / "xs")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--epochs needs a zoo size" in err[0]


def test_saved_record_repeats_the_epochs_override_and_leaves_extra_alone(tmp_path) -> None:
    import json

    from calibrate.train import Size, save, train

    tiny = Size(hidden=32, layers=1, intermediate=64, heads=2, kv_heads=1, head_dim=16, steps=0, lr=3e-3, epochs=1)
    spec = W.WorldSpec(seed=5, people=16, orgs=6, cities=6, countries=3, syllables=8)
    result = train(tiny, seed=5, batch_size=16, world_spec=spec, log_every=2, threads=1)
    extra = {"epochs": 3, "batch_size": 16, "threads": 1}
    save(result, tmp_path / "m", "tiny", 5, "cpu", extra, epochs_override=3)
    record = json.loads((tmp_path / "m" / "training.json").read_text())
    assert record["command"].endswith("--batch-size 16 --threads 1 --epochs 3")
    assert extra == {"epochs": 3, "batch_size": 16, "threads": 1}
    save(result, tmp_path / "n", "tiny", 5, "cpu", extra)
    assert "--epochs" not in json.loads((tmp_path / "n" / "training.json").read_text())["command"]


def test_shipped_zoo_spans_20x_in_block_parameters_trained_in_30_minutes_within_30_mb() -> None:
    """Issue 15's zoo as shipped: at least five sizes of the Zipf world, 20x or more in non-embedding parameters,
    each trained in at most 30 minutes on the same tokens, all together at most 30 MB; the records name the size
    and world the code defines, so `python -m calibrate.train --size NAME --seed 0` retrains each."""
    from calibrate.train import ZOO_EPOCHS, ZOO_SIZES

    models = Path(__file__).resolve().parents[1] / "examples" / "models"
    zoo = sorted(models.glob("strata-zoo-*"))
    records = [json.loads((p / "training.json").read_text()) for p in zoo]
    assert len(records) >= 5 and {r["size"] for r in records} <= set(ZOO_SIZES)
    sizes = [r["params_nonembed"] for r in records]
    assert max(sizes) >= 20 * min(sizes)
    assert all(r["seconds"] <= 1800 and r["epochs"] == ZOO_EPOCHS and r["seed"] == 0 for r in records)
    assert len({r["train_tokens"] for r in records}) == 1  # the same data budget, as a scaling law assumes
    assert all(r["world"] == json.loads(json.dumps(asdict(W.ZOO))) for r in records)  # tuples as JSON lists
    assert sum(f.stat().st_size for p in zoo for f in p.rglob("*") if f.is_file()) <= 30 * 2**20
