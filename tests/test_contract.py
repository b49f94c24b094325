"""The operator contract: five kinds, typed column declarations checked before a run and on every
output, counters into the catalog, sinks with their own artifacts folder, and stage figures."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from corpus import InputSpec, MapOperator, Pipeline, SinkOperator, StageContext
from corpus.catalog import Catalog
from corpus.executor import PipelineError
from corpus.operators import FilterOperator, Verdict, ensure_columns
from corpus.owner import ForeignFilesError
from corpus.schema import DOC_SCHEMA
from corpus.stages.filter import LengthFilter
from corpus.work import OperatorError, apply_op


def _input(tmp_path: Path, n: int = 30) -> list[InputSpec]:
    src = tmp_path / "in"
    src.mkdir(exist_ok=True)
    texts = [f"document {i} " + "word " * (i % 7) for i in range(n)]
    pl.DataFrame({"text": texts}).write_ndjson(src / "a.jsonl")
    return [InputSpec(source="s", path=str(src))]


@dataclass
class Shout(MapOperator):
    name = "shout"
    needs = {"text": pl.String}
    modifies = ("text",)
    adds = {"upper_chars": pl.Int64}
    counters = ("upper_chars",)

    def map(self, df: pl.DataFrame) -> pl.DataFrame:
        return df.with_columns(pl.col("text").str.to_uppercase(),
                               pl.col("text").str.len_chars().cast(pl.Int64).alias("upper_chars"))


@dataclass
class Sneaky(MapOperator):
    """Adds a column it does not declare."""

    name = "sneaky"
    needs = {"text": pl.String}

    def map(self, df: pl.DataFrame) -> pl.DataFrame:
        return df.with_columns(pl.lit(1).alias("surprise"))


@dataclass
class WrongType(FilterOperator):
    name = "wrong_type"
    needs = {"text": pl.String}
    adds = {"score": pl.Float64}

    def filter(self, df: pl.DataFrame) -> Verdict:
        return Verdict(keep=pl.Series([True] * df.height), scores={"score": pl.Series([1] * df.height)})


@dataclass
class Count(SinkOperator):
    """A sink: counts documents into its artifacts folder."""

    name = "count"
    needs = {"text": pl.String}
    publish = "counts"

    def consume(self, ctx: StageContext) -> dict:
        n = sum(pl.read_parquet(p).height for p in ctx.shards)
        (ctx.artifacts / "count.json").write_text(json.dumps({"label": ctx.label, "docs": n}))
        return {"docs": n}

    @classmethod
    def figures(cls, artifacts: Path) -> dict[str, float]:
        return {"docs": json.loads((artifacts / "count.json").read_text())["docs"]}


def test_declared_types_are_checked_before_a_run():
    needs_int = type("NeedsInt", (FilterOperator,), {"name": "needs_int", "needs": {"text": pl.Int64}})
    errors = ensure_columns([needs_int()], DOC_SCHEMA)
    assert errors and "needs column 'text' as Int64, but it is String" in errors[0]
    clash = ensure_columns([LengthFilter(), WrongType(), type("T", (MapOperator,), {
        "name": "t", "needs": {"n_chars": pl.String}})()], DOC_SCHEMA)
    assert any("'n_chars' as String, but it is Int64" in e for e in clash)
    assert "modifies column 'nope'" in ensure_columns(
        [type("M", (MapOperator,), {"name": "m", "modifies": ("nope",)})()], DOC_SCHEMA)[0]
    with pytest.raises(PipelineError, match="needs column 'missing'"):
        Pipeline([type("N", (MapOperator,), {"name": "n", "needs": {"missing": None}})()]).check()


def test_outputs_are_checked_against_the_declaration(tmp_path):
    with pytest.raises(OperatorError, match=r"added undeclared column\(s\) \['surprise'\]"):
        Pipeline([Sneaky()]).run(_input(tmp_path), tmp_path / "a", workers=1, quiet=True)
    with pytest.raises(OperatorError, match="adds 'score' as Int64, declared Float64"):
        Pipeline([WrongType()]).run(_input(tmp_path), tmp_path / "b", workers=1, quiet=True)


def test_counters_are_summed_per_stage_and_source(tmp_path):
    res = Pipeline([Shout()]).run(_input(tmp_path), tmp_path / "out", workers=2, quiet=True)
    data = pl.read_parquet(tmp_path / "out" / "data")
    rows = Catalog(tmp_path / "out" / "catalog.duckdb", create=False).query(
        "SELECT stage, source, counter, sum(value) FROM stage_counters WHERE run_id = ? GROUP BY ALL",
        [res.run_id])
    assert rows == [("01-shout", "s", "upper_chars", int(data["upper_chars"].sum()))]
    assert data["text"].str.contains("DOCUMENT").all()


def test_a_sink_passes_documents_on_and_publishes_its_artifacts(tmp_path):
    ops = [Count(), LengthFilter(min_words=3), Count()]
    with pytest.raises(PipelineError, match="publishes counts/ like"):
        Pipeline(ops).run(_input(tmp_path), tmp_path / "clash", workers=1, quiet=True)
    inputs = _input(tmp_path)
    res = Pipeline([Count(), LengthFilter(min_words=3)]).run(inputs, tmp_path / "out", workers=2, quiet=True)
    out = tmp_path / "out"
    assert json.loads((out / "counts" / "count.json").read_text()) == {"label": "01-count", "docs": 30}
    assert res.balance[0]["kept"] + res.balance[0]["rejected"] == 30  # the filter after it saw every document
    figures = Catalog(out / "catalog.duckdb", create=False).query(
        "SELECT stage, name, value FROM stage_figures WHERE run_id = ?", [res.run_id])
    assert figures == [("01-count", "docs", 30.0)]
    assert not list((out / "work").glob("01-count-*/shards"))  # a sink writes no documents
    # a rerun resumes: nothing to do, the same corpus
    before = sorted((out / "data").iterdir())
    again = Pipeline([Count(), LengthFilter(min_words=3)]).run(inputs, out, workers=1, quiet=True)
    assert again.manifest["shards"] == res.manifest["shards"] and sorted((out / "data").iterdir()) == before
    # files a user leaves in a published folder are not the run's: refused, never deleted
    (out / "counts" / "mine.txt").write_text("keep me")
    with pytest.raises(ForeignFilesError, match="counts/mine.txt"):
        Pipeline([Count(), LengthFilter(min_words=3)]).run(inputs, out, workers=1, quiet=True)
    assert (out / "counts" / "mine.txt").read_text() == "keep me"


def test_a_foreign_folder_where_a_sink_publishes_is_refused(tmp_path):
    out = tmp_path / "out"
    Pipeline([]).run(_input(tmp_path), out, workers=1, quiet=True)
    (out / "counts").mkdir()
    (out / "counts" / "theirs.csv").write_text("a,b")
    with pytest.raises(ForeignFilesError, match="counts/theirs.csv"):
        Pipeline([Count()]).run(_input(tmp_path), out, workers=1, quiet=True)
    assert (out / "counts" / "theirs.csv").exists()


def test_built_in_operators_give_a_column_one_type():
    """A column name two operators add means one thing: the same type in both (c4_lines' lorem ipsum
    counter and quality_signals' flag once shared a name, so the documented cleaning pipeline followed
    by quality signals failed its wiring check). Operators are taken with their defaults, or as
    declared by their class where a parameter is required."""
    import dataclasses

    from corpus import registry
    from corpus.operators import _dtype

    seen: dict[str, tuple[object, str]] = {}
    clashes = []
    for name in registry.names():
        cls = registry.get(name)
        try:
            adds = cls().columns()[1]
        except (TypeError, ValueError):  # a required parameter: the class's own declaration
            adds = cls.adds if isinstance(cls.adds, dict) else dict.fromkeys(cls.adds)
        assert dataclasses.is_dataclass(cls), name
        for col, dtype in adds.items():
            dtype = _dtype(dtype)
            if col in seen and dtype is not None and seen[col][0] is not None and seen[col][0] != dtype:
                clashes.append(f"{col}: {seen[col][1]} {seen[col][0]}, {name} {dtype}")
            seen.setdefault(col, (dtype, name))
    assert not clashes
    assert "c4_lorem_ipsum" in seen  # the check saw quality_signals' columns
    pipeline = [registry.get("c4_lines")(), registry.get("c4_lines_filter")(), registry.get("quality_signals")(),
                registry.get("c4_filter")()]
    assert ensure_columns(pipeline, DOC_SCHEMA) == []


def _map(name: str, fn, **columns) -> MapOperator:
    """A map operator ``name`` running ``fn(df)``, with its column declarations (adds, modifies)."""
    return dataclass(type("".join(c for c in name.title() if c.isalnum()) or "Nameless", (MapOperator,),
                          {"name": name, "map": lambda self, df: fn(df), **columns}))()


def test_a_document_s_own_columns_are_never_added_and_row_id_and_source_never_rewritten(tmp_path):
    """`adds` re-declaring a document column was accepted: a map rewrote every row_id (the run succeeded,
    every identity scrambled), a source rewritten failed only at the end's balance, naming no operator,
    and `text` rewritten through `adds` slipped past the check that an embedding is stale."""
    from corpus import registry
    from corpus.operators import output_problem

    scramble = _map("scramble", lambda df: df.with_columns(pl.col("row_id").reverse()), adds={"row_id": pl.Int64})
    rename = _map("rename", lambda df: df.with_columns(pl.lit("zzz").alias("source")), adds={"source": pl.String})
    shout = _map("shout_text", lambda df: df.with_columns(pl.col("text").str.to_uppercase()), adds={"text": pl.String})
    declared = _map("own_source", lambda df: df, modifies=("source",))
    with pytest.raises(PipelineError, match=r"pipeline\[0\] 'scramble' adds column 'row_id', the row's identity"):
        Pipeline([scramble]).run(_input(tmp_path), tmp_path / "a", workers=1, quiet=True)
    assert not (tmp_path / "a").exists()  # refused before anything ran
    assert "'rename' adds column 'source'" in ensure_columns([rename], DOC_SCHEMA)[0]
    assert "'own_source' modifies column 'source'" in ensure_columns([declared], DOC_SCHEMA)[0]
    errors = ensure_columns([registry.get("embed")(), shout, registry.get("semantic_dedup")()], DOC_SCHEMA)
    assert "'shout_text' adds column 'text', a column every document has" in errors[0]
    assert "'shout_text' rewrites a column it was made from" in errors[1]
    # whatever an operator declares, its output keeps every row's identity and source
    df = pl.DataFrame({"text": ["a", "b"], "source": ["s", "s"], "row_id": [1, 2]})
    assert "reordered or replaced rows" in output_problem(scramble, df, df.with_columns(pl.col("row_id").reverse()))
    assert "rewrote column 'source'" in output_problem(declared, df, df.with_columns(pl.lit("z").alias("source")))
    # a column an earlier operator added may be added again (the same operator twice)
    assert ensure_columns([LengthFilter(min_words=2), LengthFilter(min_words=3)], DOC_SCHEMA) == []


def test_an_operator_name_is_checked_before_a_run(tmp_path):
    """An operator without a name ran as stage `01-` with reject_stage ""; `my/filter` made nested
    rejected/01-my/filter/ folders, whose rows the balance then missed. Both are refused before the run,
    naming the class."""
    nameless = _map("", lambda df: df)
    with pytest.raises(PipelineError, match=r"pipeline\[0\] Nameless: the operator has no name"):
        Pipeline([nameless]).run(_input(tmp_path), tmp_path / "a", workers=1, quiet=True)
    assert not (tmp_path / "a").exists()
    slash = _map("my/filter", lambda df: df)
    with pytest.raises(PipelineError, match=r"pipeline\[1\] MyFilter: name 'my/filter' is not an operator name"):
        Pipeline([LengthFilter(), slash]).check()
    assert ensure_columns([_map("my-filter.v2", lambda df: df)], DOC_SCHEMA) == []


def _filter(name: str, verdict, **columns) -> FilterOperator:
    """A filter operator ``name`` returning ``verdict(df)``."""
    return dataclass(type("".join(c for c in name.title() if c.isalnum()), (FilterOperator,),
                          {"name": name, "filter": lambda self, df: verdict(df), **columns}))()


def test_every_dropped_row_needs_a_reason(tmp_path):
    """A null or empty reason was accepted: rejected/ held reject_reason null and `corpus stats` showed
    `drops: None: 13`. The run fails naming the stage."""
    short = pl.col("text").str.len_chars() > 12
    nulls = _filter("null_reason", lambda df: Verdict(keep=df.select(short).to_series(),
                                                      reason=pl.Series([None] * df.height, dtype=pl.String)))
    with pytest.raises(OperatorError, match=r"stage 01-null_reason: .* no reason \(null or \"\"\) for \d+ of the "
                                            r"\d+ rows it dropped: every dropped row needs a reason"):
        Pipeline([nulls]).run(_input(tmp_path), tmp_path / "a", workers=1, quiet=True)
    empty = _filter("empty_reason", lambda df: Verdict(keep=df.select(short).to_series(), reason=""))
    with pytest.raises(OperatorError, match="every dropped row needs a reason"):
        apply_op(empty, _docs(5))
    # a reason only where a row is dropped is enough
    some = _filter("some", lambda df: Verdict(keep=pl.Series([True, False] * 2 + [True]),
                                              reason=pl.Series([None, "odd"] * 2 + [None], dtype=pl.String)))
    assert apply_op(some, _docs(5))[1]["reject_reason"].to_list() == ["odd", "odd"]


@pytest.mark.parametrize(("verdict", "message"), [
    (lambda df: Verdict(keep=pl.Series([True] * df.height), reason=pl.Series(["x"] * 2)),
     "a reason Series of 2 values for 5 rows"),
    (lambda df: Verdict(keep=pl.Series([True] * df.height), scores={"sc": pl.Series([1, 2])}),
     "score 'sc' as 2 values for 5 rows"),
    (lambda df: Verdict(keep={"a": True}), "a keep mask of type dict: give a polars Series of booleans"),
    (lambda df: Verdict(keep=pl.Series([True] * df.height), reason=3), "a reason of type int"),
])
def test_a_verdict_s_contents_are_checked(verdict, message):
    """A wrong-length reason or score was a bare polars ShapeError, a keep given as a list an
    AttributeError; each now says what was wrong (a list or numpy array of bools is taken as a mask)."""
    op = _filter("judge", verdict, adds={"sc": pl.Int64})
    with pytest.raises(OperatorError, match=rf"filter operator 'judge' returned {message}"):
        apply_op(op, _docs(5))
    import numpy as np

    for keep in ([True, False] * 2 + [True], np.array([True, False] * 2 + [True])):
        listed = _filter("listed", lambda df, keep=keep: Verdict(keep=keep, reason="odd"))
        kept, rejected = apply_op(listed, _docs(5))
        assert kept.height == 3 and rejected["reject_reason"].to_list() == ["odd", "odd"]


def _docs(n: int) -> pl.DataFrame:
    return pl.DataFrame({"id": [str(i) for i in range(n)], "text": ["t"] * n, "source": ["s"] * n, "meta": ["{}"] * n,
                         "src_file": ["f"] * n, "src_row": list(range(n)), "row_id": list(range(n))}, schema=DOC_SCHEMA)


def test_a_missing_method_is_named_before_a_run(tmp_path):
    """A map defining no map(), or a global filter no load(), failed mid-run with a bare
    NotImplementedError; the check names the class and the method, and the stub says it too."""
    from corpus import GlobalFilterOperator

    @dataclass
    class NoMap(MapOperator):
        name = "no_map"

        def transform(self, df: pl.DataFrame) -> pl.DataFrame:
            return df

    @dataclass
    class NoLoad(GlobalFilterOperator):
        name = "no_load"

        def fit(self, ctx: StageContext) -> None:
            pass

        def filter(self, df: pl.DataFrame) -> Verdict:
            return Verdict(keep=pl.Series([True] * df.height))

    with pytest.raises(PipelineError, match=r"pipeline\[0\] 'no_map': NoMap defines no map\(\), which a map operator"):
        Pipeline([NoMap()]).run(_input(tmp_path), tmp_path / "a", workers=1, quiet=True)
    assert not (tmp_path / "a").exists()
    assert ensure_columns([NoLoad()], DOC_SCHEMA) == [
        "pipeline[0] 'no_load': NoLoad defines no load(), which a global_filter operator must: load(artifacts) "
        "reads that state back in each worker, before map or filter"]
    with pytest.raises(NotImplementedError, match=r"NoMap defines no map\(\)"):
        NoMap().map(pl.DataFrame())


class _Thing:
    pass


def test_a_column_of_python_objects_is_refused_naming_the_operator_and_column(tmp_path):
    """A map adding a pl.Object column was published as fixed_size_binary[8] (df.to_arrow() writes the
    objects' memory addresses): the run and verify passed, the output differed every run."""
    from corpus.operators import output_problem
    from corpus.schema import has_object
    from corpus.writers import write_parquet

    obj = _map("obj_col", lambda df: df.with_columns(
        pl.Series("obj", [_Thing() for _ in range(df.height)], dtype=pl.Object)), adds=["obj"])
    with pytest.raises(OperatorError, match=r"operator 'obj_col' returned column\(s\) \['obj'\] holding Python "
                                            r"objects"):
        Pipeline([obj]).run(_input(tmp_path, 5), tmp_path / "a", workers=1, quiet=True)
    df = pl.DataFrame({"text": ["a"], "source": ["s"], "row_id": [1]})
    assert "holding Python objects" in output_problem(obj, df, obj.map(df))
    # nested in a List, Array or Struct too (the wiring check refuses a declared one before a run)
    assert all(has_object(t) for t in (pl.Object(), pl.List(pl.Object), pl.Struct({"a": pl.List(pl.Object)}),
                                        pl.Array(pl.Object, 2)))
    assert not has_object(pl.Struct({"a": pl.List(pl.String)}))
    declared = _map("obj_decl", lambda df: df, adds={"o": pl.List(pl.Object)})
    assert "'obj_decl' adds column 'o' as List(Object): Python objects" in ensure_columns([declared], DOC_SCHEMA)[0]
    with pytest.raises(TypeError, match=r"column\(s\) \['obj'\] hold Python objects"):
        write_parquet(obj.map(df), tmp_path / "x.parquet")
    assert not (tmp_path / "x.parquet").exists()


def test_a_map_may_not_make_text_or_id_null(tmp_path):
    """A map declaring `modifies = ("text", "id")` set them null: the run published documents without a
    text, and exact dedup then merged every one of them into one. An empty text stays a text."""
    from corpus.operators import output_problem

    blank = _map("blank", lambda df: df.with_columns(pl.lit(None, pl.String).alias("text"),
                                                     pl.lit(None, pl.String).alias("id")), modifies=("text", "id"))
    with pytest.raises(OperatorError, match=r"operator 'blank' set 'text' to null in 5 of 5 rows"):
        Pipeline([blank]).run(_input(tmp_path, 5), tmp_path / "a", workers=1, quiet=True)
    df = pl.DataFrame({"id": ["1", "2"], "text": ["a", "b"], "source": ["s", "s"], "row_id": [1, 2]})
    no_id = _map("no_id", lambda d: d, modifies=("id",))
    assert "operator 'no_id' set 'id' to null in 1 of 2 rows" in output_problem(
        no_id, df, df.with_columns(pl.Series("id", ["1", None])))
    emptied = _map("emptied", lambda d: d, modifies=("text",))
    assert output_problem(emptied, df, df.with_columns(pl.lit("").alias("text"))) is None


@pytest.mark.parametrize("column", ["copy_of_row", "reject_reason", "reject_stage"])
def test_the_executor_s_own_columns_are_refused_in_adds_and_modifies(tmp_path, column):
    """A map adding `copy_of_row` made every row a copy: the run failed with 'records unaccounted for',
    naming no operator. A `reject_reason` or `reject_stage` of its own was overwritten in rejected/."""
    from corpus import registry

    adder = _map("tag", lambda df: df.with_columns(pl.lit("mine").alias(column)), adds={column: pl.String})
    with pytest.raises(PipelineError, match=rf"pipeline\[0\] 'tag' adds column '{column}', the executor's"):
        Pipeline([adder]).run(_input(tmp_path, 5), tmp_path / "a", workers=1, quiet=True)
    assert not (tmp_path / "a").exists()  # refused before anything ran
    errors = ensure_columns([adder, _map("rewrite", lambda df: df, modifies=(column,))], DOC_SCHEMA)
    assert len(errors) == 2 and f"pipeline[1] 'rewrite' modifies column '{column}', the executor's" in errors[1]
    # upsampling, a filter returning copies, adds copy_of_row as Int64
    assert ensure_columns([registry.get("sample")(weights={"s": 2.0})], DOC_SCHEMA) == []
    int_map = _map("int_copy", lambda df: df, adds={"copy_of_row": pl.Int64})
    assert "'int_copy' adds column 'copy_of_row'" in ensure_columns([int_map], DOC_SCHEMA)[0]


def test_a_map_returning_another_kind_of_frame_is_named():
    df = pl.DataFrame({"text": ["a", "b"], "source": ["s", "s"], "row_id": [1, 2]})
    with pytest.raises(OperatorError, match=r"of 2 rows \(a polars\.DataFrame.*got a pandas\.DataFrame"):
        apply_op(_map("pandas_out", lambda d: d.to_pandas()), df)
    with pytest.raises(OperatorError, match=r"got a polars\.LazyFrame"):
        apply_op(_map("lazy", lambda d: d.lazy()), df)
    with pytest.raises(OperatorError, match=r"of 2 rows .*got 1 rows"):
        apply_op(_map("short", lambda d: d.head(1)), df)


def test_two_plain_paths_of_one_file_name_say_how_to_name_them(tmp_path):
    """Plain paths are sources named after their file name: d2/f0.jsonl and d7/f0.jsonl were 'input
    'f0.jsonl' is defined more than once', naming neither path nor InputSpec(source=...)."""
    from corpus.readers import InputError

    for d in ("d2", "d7"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "f0.jsonl").write_text('{"text": "hello"}\n')
    paths = [str(tmp_path / "d2" / "f0.jsonl"), str(tmp_path / "d7" / "f0.jsonl")]
    with pytest.raises(InputError, match=r"would all be the source 'f0.jsonl'.*InputSpec\(source=") as e:
        Pipeline([LengthFilter()]).run(paths, tmp_path / "out", workers=1, quiet=True)
    assert paths[0] in str(e.value) and paths[1] in str(e.value)
    assert not (tmp_path / "out").exists()


_NOTEBOOK = '''
from dataclasses import dataclass
import polars as pl
from corpus.operators import FilterOperator, Verdict

MIN = 300

def long_enough(s):
    return s.str.len_chars() >= MIN

@dataclass
class LenC(FilterOperator):
    name = "lenc"
    LIMIT = 300
    @staticmethod
    def ok(s):
        return s.str.len_chars() >= 300
    @classmethod
    def make(cls):
        return cls()
    @property
    def size(self):
        return 300
    def filter(self, df):
        return Verdict(keep=self.ok(df["text"]) & long_enough(df["text"]), reason="short")
'''


@pytest.mark.parametrize("edit", [("LIMIT = 300", "LIMIT = 400"), (">= 300\n", ">= 400\n"),
                                  ("return cls()", "return [cls()]"), ("return 300", "return 400"),
                                  ("MIN = 300", "MIN = 400"),
                                  ("def long_enough(s):\n    return",
                                   "def long_enough(s):\n    s = s.str.strip_chars()\n    return")])
def test_an_operator_class_without_source_is_keyed_by_all_of_it(monkeypatch, edit):
    """A notebook, `python -` or `python -c` has no source to read: the key hashed only the functions among
    the class's attributes, so an edited class attribute, staticmethod, classmethod or property kept the old
    output; a script's module-level constant or helper its methods read did too. Unchanged, the key is the
    same (it resumes)."""
    import sys
    import types

    from corpus.operators import main_code

    def key(code: str) -> str:
        module = types.ModuleType("__main__")
        monkeypatch.setitem(sys.modules, "__main__", module)
        exec(compile(code, "<stdin>", "exec"), module.__dict__)
        return main_code(module.LenC)

    first = key(_NOTEBOOK)
    assert first is not None and key(_NOTEBOOK) == first
    edited = _NOTEBOOK.replace(*edit)
    assert edited != _NOTEBOOK and key(edited) != first
    # a comment or a blank line moves code, not changes it
    assert key(_NOTEBOOK.replace("LenC(FilterOperator):", "LenC(FilterOperator):\n    # a comment\n")) == first


def test_a_filter_s_copy_of_row_score_may_not_mark_rows_as_copies():
    """copy_of_row is the executor's mark of a copy: a filter (the one kind allowed to declare it, for
    Verdict.copies) that set it on the rows it judged made them copies the balance no longer counted."""
    df = pl.DataFrame({"text": ["a", "b"], "source": ["s", "s"], "row_id": [1, 2]})
    marks = dataclass(type("Marks", (FilterOperator,), {
        "name": "marks", "adds": {"copy_of_row": pl.Int64},
        "filter": lambda self, d: Verdict(keep=pl.Series([True] * d.height),
                                          scores={"copy_of_row": pl.Series([1] * d.height, dtype=pl.Int64)})}))()
    assert ensure_columns([marks], DOC_SCHEMA) == []
    with pytest.raises(OperatorError, match="'marks' returned a 'copy_of_row' score that marks rows as copies"):
        apply_op(marks, df)


def _main_key(monkeypatch, code: str, cls: str = "Op") -> str:
    """main_code of class ``cls`` defined by ``code`` run as ``__main__`` (as a notebook or python -c)."""
    import sys
    import types

    from corpus.operators import main_code

    module = types.ModuleType("__main__")
    monkeypatch.setitem(sys.modules, "__main__", module)
    exec(compile(code, "<stdin>", "exec"), module.__dict__)
    return main_code(getattr(module, cls))


def _keys_across_runs(code: str, seeds=("1", "2", "3", "4")) -> set[str]:
    """The keys ``code`` (a script ending in a print of a key) prints in separate interpreters, one per
    PYTHONHASHSEED."""
    import os
    import subprocess
    import sys

    keys = set()
    for seed in seeds:
        out = subprocess.run([sys.executable, "-"], input=code, text=True, capture_output=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": seed}, cwd=Path(__file__).parent.parent)
        keys.add(out.stdout.strip())
    return keys


_READS_ATTRIBUTES = '''
import time, re
from dataclasses import dataclass
import polars as pl
from corpus.operators import MapOperator

start = STAMP
limit = STAMP
param_problems = STAMP
MIN = 3

@dataclass
class Op(MapOperator):
    name = "op"
    limit: int = 3
    def __post_init__(self):
        assert self.limit >= MIN
    def map(self, df):
        m = re.match("a", "a")
        m.start()
        return df.head(self.limit)
'''


@pytest.mark.parametrize("stamp", ["1.5", "2.5"])
def test_a_main_operator_is_not_keyed_by_globals_it_never_reads(monkeypatch, stamp):
    """co_names holds attribute and method names too: a script's `start = time.time()` keyed an operator
    calling m.start(), a global named like a dataclass field (walked through the generated __init__) or read
    by Operator's own __post_init__ wrapper did too, so the stage reran every time. Globals the user's code
    reads still count, in a __post_init__ behind that wrapper too."""
    base = _main_key(monkeypatch, _READS_ATTRIBUTES.replace("STAMP", "0.5"))
    assert _main_key(monkeypatch, _READS_ATTRIBUTES.replace("STAMP", stamp)) == base
    assert _main_key(monkeypatch, _READS_ATTRIBUTES.replace("STAMP", stamp).replace("MIN = 3", "MIN = 2")) != base


_HASH_ORDER = '''
from dataclasses import dataclass, field
from corpus.operators import MapOperator, main_code

@dataclass
class Cfg:
    tags: set

CFG = Cfg(tags={"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"})

@dataclass
class Op(MapOperator):
    name = "op"
    words: frozenset = frozenset({"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"})
    def map(self, df):
        return df.filter(df["text"].is_in(list(CFG.tags)))

print(main_code(Op), Op().config_key())
'''


def test_a_main_operator_s_key_does_not_change_with_the_hash_seed():
    """A set inside a dataclass instance (repr in hash order) and a set parameter (json default=str) keyed
    differently in every interpreter: the stage reran each time."""
    keys = [k.split() for k in _keys_across_runs(_HASH_ORDER)]
    assert len({k[0] for k in keys}) == 1  # main_code: the dataclass instance's set
    assert len({k[1] for k in keys}) == 1  # config_key: the frozenset parameter


def test_a_main_operator_reading_a_list_that_holds_itself_is_keyed(monkeypatch):
    code = _READS_ATTRIBUTES.replace("STAMP", "1").replace("MIN = 3", "MIN = 3\nL = [1]\nL.append(L)\n"
                                                           "D = {}\nD['d'] = D").replace(
        "return df.head", "print(L, D)\n        return df.head")
    assert _main_key(monkeypatch, code) == _main_key(monkeypatch, code)


_CACHED = '''
import functools
from dataclasses import dataclass
import polars as pl
from corpus.operators import MapOperator

EXPR = pl.col("text").str.contains("PATTERN" * 40 + "END")

@functools.lru_cache
def norm(s):
    return s.lower()

@dataclass
class Op(MapOperator):
    name = "op"
    @functools.cached_property
    def width(self):
        return 10
    def map(self, df):
        return df.filter(EXPR).with_columns(pl.col("text").map_elements(norm)).head(self.width)
'''


@pytest.mark.parametrize("edit", [("s.lower()", "s.upper()"), ("return 10", "return 20"), ('"END"', '"FIN"')])
def test_a_main_operator_s_cached_helpers_and_expressions_are_keyed_by_their_code(monkeypatch, edit):
    """An lru_cache function, a cached_property and a pl.Expr constant (its repr shows an address and is cut
    short) were keyed by their type only: editing them reran nothing."""
    assert _main_key(monkeypatch, _CACHED.replace(*edit)) != _main_key(monkeypatch, _CACHED)


def test_the_object_column_check_and_copy_marks_are_the_schema_s():
    """The writers used the operators module's private check; the executor and the sample stage each built
    the incoming copy_of_row series."""
    import inspect

    import corpus.work
    import corpus.writers
    import stages.sample
    from corpus.schema import copy_marks, has_object

    assert has_object(pl.List(pl.Object)) and not has_object(pl.Int64)
    marks = copy_marks(pl.DataFrame({"text": ["a", "b"]}))
    assert marks.dtype == pl.Int64 and marks.null_count() == 2 and marks.name == "copy_of_row"
    assert "corpus.operators import _" not in inspect.getsource(corpus.writers)
    for module in (corpus.work, stages.sample):
        assert "[None] * df.height" not in inspect.getsource(module)
