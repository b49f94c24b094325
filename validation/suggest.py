"""``corpus validate suggest INPUT``: profile a trusted corpus and propose a suite for a person to review.

Bounds come from the corpus's own quantiles (polars, over every document; the per-document figures are
the profiler's, see documents.py), with room to spare, and each proposed expectation says in ``notes``
where its numbers came from. What is proposed, for documents:

* the schema: the columns every file has (others allowed) and each one's type where the files agree;
  non-null for columns without nulls; unique ids when they are;
* text: non-null and not blank (for the share found so, when some are not), length (characters) within
  [p0.1, p99.9] for 99% of documents;
* encoding damage (``frac_replacement``) at most max(p99.9, 0.001) for 99% of documents;
* residual PII (``PII_PATTERNS``): no more documents matching than twice the share found plus 1 point
  (that 1 point only if the corpus already had some: none found, none allowed);
* the exact-duplicate rate (``text_key``, as the profile counts it): at most max(2 x found, found + 1%);
* languages (``lang``) seen in at least 0.1% of documents, for 99% of documents (less when rarer ones
  add up to more); ``lang_score`` at least its p1 (the lower rank: at most 1% below) for 99%;
* the source mix: each source's share within +-max(5 points, a quarter of it), and no new source;
* other numeric columns within [p0.1, p99.9] for 99%; other text columns with at most 20 distinct
  values: those values, for 99%.

For token shard sets the suite is the token contract (tokens.default_entries).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import polars as pl

from corpus.schema import ID, META, ROW_ID, SOURCE, SRC_FILE, SRC_ROW, TEXT
from corpus.validation.documents import TEXT_KEY
from corpus.validation.engine import Part, Table

# Patterns of residual PII. No \b, \d, \w, \s or $: pandas hands patterns without them to pyarrow's RE2 (Python's
# re, document by document, is about 10x slower on text with non-ASCII characters).
PII_PATTERNS = {
    "email": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:[.][A-Za-z0-9-]+)*[.][A-Za-z]{2,}",
    "ipv4": r"(?:^|[^0-9.])(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])[.]){3}"
            r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?:\Z|[^0-9.])",
    "phone": r"(?:^|[^0-9])(?:[+]1[ .-]?)?[(]?[2-9][0-9]{2}[)]?[ .-][0-9]{3}[ .-][0-9]{4}(?:\Z|[^0-9])",
}
NOT_PROFILED = {ROW_ID, SRC_FILE, SRC_ROW, META, TEXT, ID}  # provenance and free text: no bounds proposed
MOSTLY = 0.99
CATEGORIES = 20
LANG_SHARE = 0.001
TYPE_NAMES = {pl.String: "str", pl.Int64: "int64", pl.Int32: "int32", pl.Int16: "int16", pl.Int8: "int8",
              pl.UInt64: "uint64", pl.UInt32: "uint32", pl.Float64: "float64", pl.Float32: "float32",
              pl.Boolean: "bool"}


def _profile_part(args: tuple[Part, tuple[str, ...], tuple[str, ...]]) -> dict:
    """One part's per-document figures (``frame``): its own columns but ``drop``, text length, the derived
    ``features`` and a flag per PII pattern (the text itself stays behind); and the columns and types of
    each of its batches (``schemas``: a batch is files of one schema, which schema expectations judge)."""
    from corpus.validation.documents import derive

    part, drop, features = args
    frames = []
    schemas = []
    for df in part.read(*part.args):
        schemas.append(dict(df.schema))
        if TEXT in df.columns and df.schema[TEXT] == pl.String:
            df = derive(df, features)
            text = df[TEXT].to_pandas()  # the patterns run as GX will run them (pandas, RE2 through pyarrow)
            df = df.with_columns(pl.col(TEXT).str.len_chars().alias("_chars"),
                                 (pl.col(TEXT).str.strip_chars() == "").alias("_blank"),
                                 *[pl.Series(f"_pii_{k}", text.str.contains(p).fillna(False).to_numpy(), pl.Boolean)
                                   for k, p in PII_PATTERNS.items()])
        frames.append(df.select([c for c in df.columns if c not in drop]))
    df = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
    return {"part": part.index, "rows": df.height, "frame": df, "schemas": schemas}


def _common_columns(table: Table, schemas: list[dict]) -> tuple[dict, dict]:
    """(the columns every batch has -> their type, or None where batches type them differently; the
    columns only some batches have -> how many of them). Files of a folder may differ (JSONL: a field
    only some records have, 1 in one file and 3.5 in another), and a schema expectation must hold in each;
    ``table.columns`` are every file's (a JSONL file's batches have them all, null where it lacks one)."""
    # row_id is added to each batch when the data has none: it is not a column of the files
    seen = [{c: t for c, t in sch.items() if c != ROW_ID or ROW_ID in table.columns}
            for sch in (schemas or [dict(table.columns)])]
    order = list(dict.fromkeys(c for sch in seen for c in sch))
    common: dict = {}
    partial: dict[str, int] = {}
    for col in order:
        types = {sch[col] for sch in seen if col in sch}
        have = sum(col in sch for sch in seen)
        if have < len(seen):
            partial[col] = have
        else:
            common[col] = types.pop() if len(types) == 1 else None
    return common, partial


def entry(expectation: str, notes: str, meta: dict | None = None, **kwargs: object) -> dict:
    """One proposed expectation, with the reason for its numbers in ``notes``."""
    return {"type": expectation, "kwargs": kwargs, "notes": notes, **({"meta": meta} if meta else {})}


def suggest_documents(table: Table, pool_map: Callable[[Callable, Sequence], list], source: str) -> list[dict]:
    """Proposed expectations (suite entries) for a trusted documents table."""
    parts = pool_map(_profile_part, [(p, (TEXT, META), ("frac_replacement", TEXT_KEY)) for p in table.parts])
    columns, partial = _common_columns(table, [sch for p in parts for sch in p["schemas"]])
    has_text = columns.get(TEXT) == pl.String
    frames = [p["frame"] for p in parts if p["frame"].width]
    df = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
    n = df.height
    where = f"{n:,} documents of {source}"
    mixed = [c for c, t in columns.items() if t is None]
    only = (f"; {', '.join(partial)} not in every file: left out" if partial else "") + (
        f"; {', '.join(mixed)} typed differently by the files: no type proposed" if mixed else "")
    out = [entry("expect_table_columns_to_match_set", f"the columns of {source} (others allowed){only}",
                 column_set=list(columns), exact_match=False),
           entry("expect_table_row_count_to_be_between", "a corpus with documents in it", min_value=1)]
    for col, dtype in columns.items():
        name = TYPE_NAMES.get(type(dtype))
        if name:
            out.append(entry("expect_column_values_to_be_of_type", f"{col} is {dtype} in {source}", column=col,
                             type_=name))
    for col in columns:
        if col == TEXT and "_chars" in df.columns and n:
            out.append(_text_not_null(df, where))
        elif n and col != TEXT and col in df.columns and df[col].null_count() == 0:
            out.append(entry("expect_column_values_to_not_be_null", f"no nulls in {where}", column=col))
    if ID in df.columns and n and df[ID].n_unique() == n:
        out.append(entry("expect_column_values_to_be_unique", f"unique in {where}", column=ID))
    if has_text and n:
        out += _text(df, where)
    if SOURCE in df.columns and n:
        out += _sources(df, where)
    if "lang" in df.columns and n:
        out += _languages(df, where)
    for col in columns:
        if col in NOT_PROFILED or col in (SOURCE, "lang") or col not in df.columns or not n:
            continue
        if col == "lang_score" and "lang" in df.columns:
            continue
        dtype = df[col].dtype  # the files' common type (Int64 and Float64: Float64)
        if dtype.is_numeric() and df[col].drop_nulls().len():
            lo, hi = _q(df[col], 0.001), _q(df[col], 0.999)
            out.append(entry("expect_column_values_to_be_between", f"p0.1 = {lo:g}, p99.9 = {hi:g} over {where}",
                             column=col, min_value=_floor(lo), max_value=_ceil(hi), mostly=MOSTLY))
        elif dtype == pl.String and 0 < df[col].drop_nulls().n_unique() <= CATEGORIES:
            values = sorted(df[col].drop_nulls().unique().to_list())
            out.append(entry("expect_column_values_to_be_in_set", f"the {len(values)} values of {col} in {where}",
                             column=col, value_set=values, mostly=MOSTLY))
    return out


def _q(s: pl.Series, q: float) -> float:
    v = s.drop_nulls().cast(pl.Float64).quantile(q, "nearest")
    return float(v) if v is not None else 0.0


def _allowed_out(m: int, mostly: float) -> int:
    """The most of ``m`` values that may fail an expectation of ``mostly`` and it still passes, by GX's own
    arithmetic (``(m - k) / m >= mostly``, floats and all)."""
    k = int(m * (1 - mostly))
    while k > 0 and (m - k) / m < mostly:
        k -= 1
    while k < m and (m - k - 1) / m >= mostly:
        k += 1
    return k


def _low(s: pl.Series, mostly: float) -> float:
    """The lowest value that leaves no more values below it than ``mostly`` allows (about p(1 - mostly),
    rounded to the lower rank): a nearest-rank p1 left 1 row of 51 to 99 below, 1.03% of 97."""
    v = s.drop_nulls().cast(pl.Float64).sort()
    return float(v[_allowed_out(v.len(), mostly)]) if v.len() else 0.0


def _share_mostly(ok: int, m: int) -> float:
    """The largest 4-digit ``mostly`` that ``ok`` good values of ``m`` pass by GX's arithmetic (rounding
    down can still land a float above ok / m)."""
    mostly = _floor(ok / m)
    while mostly > 0 and ok / m < mostly:
        mostly = round(mostly - 0.0001, 4)
    return mostly


def _text_not_null(df: pl.DataFrame, where: str) -> dict:
    """text non-null, for the share that has one: the profile's length is null exactly for a null text
    (the text itself stays in the parts)."""
    nulls = df["_chars"].null_count()
    if not nulls:
        return entry("expect_column_values_to_not_be_null", f"no nulls in {where}", column=TEXT)
    return entry("expect_column_values_to_not_be_null", f"{nulls:,} null texts in {where}", column=TEXT,
                 mostly=_share_mostly(df.height - nulls, df.height))


def _floor(x: float, digits: int = 4) -> float | int:
    return int(math.floor(x)) if abs(x) >= 10 else math.floor(x * 10**digits) / 10**digits


def _ceil(x: float, digits: int = 4) -> float | int:
    return int(math.ceil(x)) if abs(x) >= 10 else math.ceil(x * 10**digits) / 10**digits


def _text(df: pl.DataFrame, where: str) -> list[dict]:
    lo, hi = _q(df["_chars"], 0.001), _q(df["_chars"], 0.999)
    rep = _q(df["frac_replacement"], 0.999)
    pii = df.select(pl.any_horizontal(pl.col(f"_pii_{k}") for k in PII_PATTERNS).mean()).item() or 0.0
    keys = df[TEXT_KEY].drop_nulls()
    dup = 1 - keys.n_unique() / max(keys.len(), 1)
    allowed = min(1.0, max(2 * dup, dup + 0.01))
    # GX leaves null texts out of the regex's count: blanks are a share of the texts there are.
    blank, texts = int(df["_blank"].sum()), df["_blank"].len() - df["_blank"].null_count()
    not_blank = (entry("expect_column_values_to_match_regex", f"no blank texts in {where}", column=TEXT, regex=r"\S")
                 if not blank else
                 entry("expect_column_values_to_match_regex", f"{blank:,} blank texts of {texts:,} in {where}",
                       column=TEXT, regex=r"\S", mostly=_share_mostly(texts - blank, texts)))
    return [
        not_blank,
        entry("expect_column_value_lengths_to_be_between",
              f"p0.1 = {lo:,.0f}, p99.9 = {hi:,.0f} characters over {where}",
              column=TEXT, min_value=max(1, int(lo)), max_value=int(math.ceil(hi)), mostly=MOSTLY),
        entry("expect_column_values_to_be_between",
              f"p99.9 = {rep:.4g} (U+FFFD and mojibake per character) over {where}",
              column="frac_replacement", max_value=_ceil(max(rep, 0.001)), mostly=MOSTLY),
        entry("expect_column_values_to_not_match_regex_list",
              f"{pii:.2%} of {where} match one of: {', '.join(PII_PATTERNS)}"
              + (" (twice that, plus 1%, allowed)" if pii else ""),
              column=TEXT, regex_list=list(PII_PATTERNS.values()),
              **({"mostly": _floor(max(0.0, 1 - 2 * pii - 0.01))} if pii else {})),
        entry("expect_column_proportion_of_unique_values_to_be_between",
              f"exact-duplicate rate {dup:.2%} in {where} (the profile's exact_dup_rate); at most {allowed:.2%} "
              "allowed", column=TEXT_KEY, min_value=_floor(1 - allowed)),
    ]


def _sources(df: pl.DataFrame, where: str) -> list[dict]:
    shares = df[SOURCE].value_counts(normalize=True, name="share").sort(SOURCE)
    out = [entry("expect_column_distinct_values_to_be_in_set", f"the sources of {where}", column=SOURCE,
                 value_set=shares[SOURCE].to_list())]
    share_only = {"scope": "corpus"}  # a share of the corpus: failing it names no rows to quarantine
    for src, share in shares.iter_rows():
        band = max(0.05, share / 4)
        lo, hi = max(0.0, share - band), min(1.0, share + band)
        note = f"{src} is {share:.1%} of {where}; its share between {lo:.1%} and {hi:.1%}"
        if lo > 0:
            out.append(entry("expect_column_values_to_be_in_set", f"{note} (lower bound)", share_only,
                             column=SOURCE, value_set=[src], mostly=_floor(lo)))
        if hi < 1:
            out.append(entry("expect_column_values_to_not_be_in_set", f"{note} (upper bound)", share_only,
                             column=SOURCE, value_set=[src], mostly=_floor(1 - hi)))
    return out


def _languages(df: pl.DataFrame, where: str) -> list[dict]:
    shares = df["lang"].drop_nulls().value_counts(normalize=True, name="share")
    common = shares.filter(pl.col("share") >= LANG_SHARE)
    langs = sorted(common["lang"].to_list())
    # many rare languages can add up to more than 1 - MOSTLY: then allow what this corpus has
    mostly = min(MOSTLY, _floor(common["share"].sum()))
    note = f"languages in at least {LANG_SHARE:.1%} of {where}" + (
        f" ({1 - common['share'].sum():.2%} in rarer ones)" if mostly < MOSTLY else "")
    out = [entry("expect_column_values_to_be_in_set", note, column="lang", value_set=langs, mostly=mostly)]
    if "lang_score" in df.columns and df["lang_score"].drop_nulls().len():
        p1 = _low(df["lang_score"], MOSTLY)
        out.append(entry("expect_column_values_to_be_between", f"p1 = {p1:.3f} (lower rank) over {where}",
                         column="lang_score", min_value=_floor(p1, 3), mostly=MOSTLY))
    return out
