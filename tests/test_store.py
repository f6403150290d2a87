"""The results store and the published-data import: idempotent, validated, nothing lost."""

import sqlite3

import pytest

from calibrate.published import PublishedDataError, published_csvs, read_published_csv
from calibrate.store import SCHEMA_VERSION, Store, StoreError
from fit.pipeline import SHIPPED_PUBLISHED
from strata.rows import ResultRow
from strata.tiermap import TierMapError, load_tier_map


def row(**kw):
    base = dict(source="s", model="m", family="f", params_b=1.0, method="GPTQ", bits=4, group_size=128,
                calib_samples=128, task="arc_easy", metric="acc", value=50.0, accuracy=0.5)  # fmt: skip
    return ResultRow(**{**base, **kw})


def test_add_is_idempotent_and_never_overwrites(tmp_path):
    with Store.open(tmp_path / "r.sqlite") as db:
        assert db.add([row(), row(bits=3)]) == 2
        assert db.add([row(value=99.0, accuracy=0.99)]) == 0  # same measurement: kept as first stored
        assert db.count() == 2
        assert next(db.rows("bits = 4")).accuracy == 0.5


def test_store_of_another_schema_version_is_refused_untouched(tmp_path):
    path = tmp_path / "r.sqlite"
    with Store.open(path) as db:
        db.add([row()])
        db.conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
        db.conn.commit()
    with pytest.raises(StoreError, match="schema version 99"):
        Store.open(path)
    assert sqlite3.connect(path).execute("SELECT COUNT(*) FROM results").fetchone()[0] == 1


def test_foreign_sqlite_file_is_not_taken_over(tmp_path):
    path = tmp_path / "other.sqlite"
    sqlite3.connect(path).execute("CREATE TABLE t (x)")
    with pytest.raises(StoreError, match="not a strata store"):
        Store.open(path)


def test_store_schema_version_is_recorded(tmp_path):
    with Store.open(tmp_path / "r.sqlite") as db:
        assert db.conn.execute("SELECT value FROM meta").fetchone()[0] == str(SCHEMA_VERSION)


def test_a_new_schema_version_is_one_migration_applied_on_open(tmp_path, monkeypatch):
    from calibrate import store as store_module

    path = tmp_path / "r.sqlite"
    with Store.open(path) as db:
        db.add([row()])
    added = {**store_module.MIGRATIONS, SCHEMA_VERSION + 1: ("ALTER TABLE results ADD COLUMN probe TEXT",)}
    monkeypatch.setattr(store_module, "MIGRATIONS", added)
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with Store.open(path) as db:  # the older store is brought up to date, its rows kept
        assert db.conn.execute("SELECT value FROM meta").fetchone()[0] == str(SCHEMA_VERSION + 1)
        assert "probe" in {r[1] for r in db.conn.execute("PRAGMA table_info(results)")}
        assert [r.key() for r in db.rows()] == [row().key()]
    failing = {**added, SCHEMA_VERSION + 2: ("ALTER TABLE results ADD COLUMN other TEXT", "SELECT * FROM nowhere")}
    monkeypatch.setattr(store_module, "MIGRATIONS", failing)
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", SCHEMA_VERSION + 2)
    with pytest.raises(sqlite3.OperationalError):
        Store.open(path)
    db = sqlite3.connect(path)  # a step that fails leaves its version undone, not half done
    assert db.execute("SELECT value FROM meta").fetchone()[0] == str(SCHEMA_VERSION + 1)
    assert "other" not in {r[1] for r in db.execute("PRAGMA table_info(results)")}


def test_rows_filter_by_column_values(tmp_path):
    with Store.open(tmp_path / "r.sqlite") as db:
        db.add([row(), row(model="n"), row(model="n", source="t")])
        assert {(r.source, r.model) for r in db.rows(model="n")} == {("s", "n"), ("t", "n")}
        assert [(r.source, r.model) for r in db.rows(source="t", model="n")] == [("t", "n")]
        assert len(list(db.rows(source=None, model=None))) == 3  # None: no condition
        with pytest.raises(ValueError, match="not columns"):
            list(db.rows(colour="red"))


def test_published_import_keeps_every_row_and_flags_suspect(tmp_path):
    tmap = load_tier_map()
    with Store.open(tmp_path / "r.sqlite") as db:
        total = 0
        for f in published_csvs(SHIPPED_PUBLISHED):
            rows = list(read_published_csv(f, tmap))
            total += len(rows)
            db.add(rows)
        assert db.count() == total == 5474  # every data row of the seven CSVs
        assert db.add(read_published_csv(published_csvs(SHIPPED_PUBLISHED)[0], tmap)) == 0
        suspect = list(db.rows("suspect = 1"))
        assert len(suspect) == 62 and all("SUSPECT" in r.note for r in suspect)
        arc = next(db.rows("model = 'Qwen3-8B' AND method = 'FP16' AND task = 'arc_challenge'"))
        assert arc.tier == "KR" and arc.chance == 0.25 and arc.n_items == 1172
        assert arc.correct == round(arc.accuracy * 1172)


def test_published_metrics_are_kept_apart_and_named_as_rows_store_them():
    tmap = load_tier_map()
    lee = list(read_published_csv(SHIPPED_PUBLISHED / "lee_quant_tradeoffs_2409.11055v6.csv", tmap))
    instruct = [r for r in lee if r.model == "meta-llama/Llama-3.1-8B-Instruct" and r.method == "FP16"]
    by_task = {r.task: r for r in instruct}
    arc, gsm = by_task["arc_challenge"], by_task["gsm8k"]
    assert (arc.metric, arc.tier, arc.n_items) == ("acc_norm", "KR", 1172)  # acc_norm_pct: its own metric, a tier
    assert (gsm.metric, gsm.tier, gsm.chance) == ("exact_match", "KR", 0.0)  # GSM8K enters KR
    assert abs(gsm.accuracy - 0.7665) < 1e-9
    assert by_task["leaderboard_bbh"].accuracy is None and by_task["leaderboard_bbh"].tier is None  # lb2_*: no
    assert by_task["truthfulqa_mc2"].accuracy is None  # mc2 is a probability mass, not items correct
    assert {r.family for r in lee if "Llama-3." in r.model} == {"Llama-3"}  # 3.1 / 3.2 rows: one generation
    qwen1 = next(
        read_published_csv(SHIPPED_PUBLISHED / "qwen1_chat_gptq_readme.csv", tmap)
    )  # fmt: skip
    assert qwen1.task == "mmlu" and qwen1.metric == "acc"
    gsm_q = [r for r in read_published_csv(SHIPPED_PUBLISHED / "qwen1_chat_gptq_readme.csv", tmap)
             if r.task == "gsm8k"]  # fmt: skip
    assert gsm_q and all(r.metric == "exact_match" for r in gsm_q)  # a generation task's acc is its exact match
    # the README states no group size; the makers' run_gptq.py quantizes at 128: GPTQ rows take it, said in the note
    gptq = [r for r in read_published_csv(SHIPPED_PUBLISHED / "qwen1_chat_gptq_readme.csv", tmap) if r.method == "GPTQ"]
    assert gptq and all(r.group_size == 128 and "run_gptq.py" in r.note for r in gptq)
    # the Qwen2 page states neither; its makers' gptq.rst quantizes at G=128: GPTQ rows take it, no Cb is invented
    qwen2 = [r for r in read_published_csv(SHIPPED_PUBLISHED / "qwen2_instruct_gptq_awq_docs.csv", tmap)
             if r.method == "GPTQ"]  # fmt: skip
    assert qwen2 and all(r.group_size == 128 and "gptq.rst" in r.note and r.calib_samples is None for r in qwen2)


def test_an_exported_row_on_another_metric_reads_back_the_same(tmp_path):
    import io

    from calibrate.published import write_csv

    rows = [row(task="arc_challenge", metric="acc_norm", value=61.4, accuracy=0.614, tier="KR"),
            row(task="gsm8k", metric="exact_match,strict-match", value=72.3, accuracy=0.723, tier="KR"),
            row(task="gsm8k", metric="exact_match", value=72.0, accuracy=0.72, tier="KR")]  # fmt: skip
    buf = io.StringIO()
    write_csv(rows, buf)
    path = tmp_path / "x.csv"
    path.write_text(buf.getvalue())
    back = list(read_published_csv(path, load_tier_map()))
    assert [(r.task, r.metric, r.tier) for r in back] == [(r.task, r.metric, r.tier) for r in rows]
    assert all(abs(a.accuracy - b.accuracy) < 1e-12 for a, b in zip(back, rows, strict=True))


def test_shipped_published_copy_matches_shared_data():
    shared = SHIPPED_PUBLISHED.parents[3] / "shared" / "data" / "published"
    if not shared.exists():
        pytest.skip("../shared is not beside this checkout")
    for f in published_csvs(SHIPPED_PUBLISHED):
        assert f.read_bytes() == (shared / f.name).read_bytes(), f"{f.name} differs from shared/data/published"


def test_csv_with_missing_columns_is_refused_with_their_names(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("source,model,value\nx,y,1\n")
    with pytest.raises(PublishedDataError, match="missing column.*params_b"):
        list(read_published_csv(bad, load_tier_map()))


def test_csv_with_non_numeric_value_names_line_and_column(tmp_path):
    header = published_csvs(SHIPPED_PUBLISHED)[0].read_text().splitlines()[0]
    cols = header.split(",")
    bad = tmp_path / "bad.csv"
    bad.write_text(header + "\n" + ",".join("7" if c != "bits" else "four" for c in cols) + "\n")
    with pytest.raises(PublishedDataError, match="line 2: column 'bits' must be a number"):
        list(read_published_csv(bad, load_tier_map()))


def test_tier_map_errors_name_the_field(tmp_path):
    bad = tmp_path / "map.yaml"
    bad.write_text("schema_version: 1\ntasks:\n  arc_easy: {tier: KX, chance: 0.25}\n")
    with pytest.raises(TierMapError, match="tasks.arc_easy.tier"):
        load_tier_map(bad)
    bad.write_text("schema_version: 1\ntasks:\n  arc_easy: {tier: KA, chance: 1.5}\n")
    with pytest.raises(TierMapError, match="chance"):
        load_tier_map(bad)
    with pytest.raises(TierMapError, match="does not exist"):
        load_tier_map(tmp_path / "nope.yaml")


def test_default_tier_map_follows_the_paper_where_known():
    tmap = load_tier_map()
    assert {t: tmap.tasks[t].tier for t in ("triviaqa", "nq_open", "mmlu", "hellaswag", "gsm8k", "arc_challenge")} == {
        "triviaqa": "KM", "nq_open": "KM", "mmlu": "KA", "hellaswag": "KA", "gsm8k": "KR", "arc_challenge": "KR"
    }  # fmt: skip
    assert all(s.why for s in tmap.tasks.values() if s.evidence == "project-choice")
    assert tmap.resolve("NQ") == "nq_open"


def test_import_published_cli_is_idempotent_and_refuses_bad_input(tmp_path):
    from typer.testing import CliRunner

    from calibrate.cli import app

    store = tmp_path / "r.sqlite"
    first = CliRunner().invoke(app, ["import-published", "--store", str(store)])
    again = CliRunner().invoke(app, ["import-published", "--store", str(store)])
    assert first.exit_code == again.exit_code == 0
    assert "5474 rows" in again.output and "0 new of 2295 rows" in again.output
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.csv").write_text("source,model\n1,2\n")
    bad = CliRunner().invoke(app, ["import-published", "--store", str(store), "--dir", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "missing column" in bad.output
    with Store.open(store) as db:
        assert db.count() == 5474  # nothing already stored was lost
