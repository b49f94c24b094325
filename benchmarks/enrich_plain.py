"""Plain per-document Python versions of the enrichment operators' work: the baseline that
``benchmarks/enrich.py`` times them against, and the reference ``tests/test_enrich_signals.py`` holds
them equal to. Written the way datatrove's filters are (``src/datatrove/pipeline/filters/``), one
document at a time, with words from ``str.split()`` (see stages/signals.py).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import Counter
from urllib.parse import urlsplit

import polars as pl
import regex

from corpus.stages.signals import datatrove_words

STOP_WORDS = {"the", "be", "to", "of", "and", "that", "have", "with"}
C4_CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
C4_POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
FINEWEB_END = regex.compile(r"[\p{Sentence_Terminal}\u17d6\u17d9\u17da]\Z")  # datatrove's TERMINAL_PUNCTUATION
SENTENCE_BREAK = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*\s+\S")


def is_punct(c: str) -> bool:
    return unicodedata.category(c)[0] in "PS"


def strip_punct(w: str) -> str:
    a, b = 0, len(w)
    while a < b and is_punct(w[a]):
        a += 1
    while b > a and is_punct(w[b - 1]):
        b -= 1
    return w[a:b]


def ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def find_duplicates(items: list[str]) -> tuple[int, int]:
    seen: set[str] = set()
    n = chars = 0
    for x in items:
        if x in seen:
            n += 1
            chars += len(x)
        else:
            seen.add(x)
    return n, chars


def top_ngram_chars(words: list[str], n: int) -> int:
    grams = [" ".join(words[i:i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0
    gram, count = Counter(grams).most_common(1)[0]
    return len(gram) * count


def dup_ngram_chars(words: list[str], n: int) -> int:
    seen: set[str] = set()
    chars, i = 0, 0
    while i < len(words) - n + 1:
        gram = "".join(words[i:i + n])
        if gram in seen:
            chars += len(gram)
            i += n
        else:
            seen.add(gram)
            i += 1
    return chars


def url_parts(url: str | None) -> tuple[str | None, str | None]:
    if not url or "://" not in url:
        return None, None
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None, None
    host = (host or "").rstrip(".").removeprefix("www.")
    if not host:
        return None, None
    if re.fullmatch(r"\d+(\.\d+){3}", host) or ":" in host or "." not in host:
        return host, None
    return host, host.rsplit(".", 1)[1]


def signals(text: str, meta: str = "{}", url_field: str = "url", terminal_punct: bool = True,
            short_line_chars: int = 30, words_mode: str = "whitespace") -> dict:
    """Every quality-signal column of one document (docs/operators.md, "Quality signals")."""
    # datatrove-like words: the operator's own splitting (stages/words.py), one text
    words = text.split() if words_mode == "whitespace" else datatrove_words(pl.Series([text]))[0].to_list()
    n_words = len(words)
    nbytes = len(text.encode())
    out: dict = {
        "n_chars": len(text), "n_bytes": nbytes, "n_words": n_words, "n_lines": text.count("\n") + 1,
        "max_word_length": max((len(w) for w in words), default=0), "est_tokens": -(-nbytes // 4),
        "content_hash": hashlib.blake2b(text.encode(), digest_size=16).hexdigest(),
    }
    # Gopher quality
    non_symbol = [w for w in words if any(not is_punct(c) for c in w)]
    lines = text.splitlines()
    out["gopher_words"] = len(non_symbol)
    out["gopher_mean_word_length"] = (sum(len(strip_punct(w)) for w in non_symbol) / len(non_symbol)
                                      if non_symbol else None)
    out["gopher_hash_ratio"] = ratio(text.count("#"), n_words)
    out["gopher_ellipsis_ratio"] = ratio(text.count("...") + text.count("\u2026"), n_words)
    out["gopher_bullet_lines"] = ratio(sum(s.lstrip().startswith(("\u2022", "-")) for s in lines), len(lines))
    out["gopher_ellipsis_lines"] = ratio(sum(s.rstrip().endswith(("...", "\u2026")) for s in lines), len(lines))
    out["gopher_alpha_words"] = ratio(sum(any(c.isalpha() for c in w) for w in words), n_words)
    out["gopher_stop_words"] = len({strip_punct(w) for w in words} & set(STOP_WORDS))
    # Gopher repetition
    paras = re.split(r"\n{2,}", text.strip())
    n, chars = find_duplicates(paras)
    out["gopher_dup_para_frac"] = ratio(n, len(paras))
    out["gopher_dup_para_char_frac"] = ratio(chars, len(text))
    rep_lines = re.split("\n+", text)
    n, chars = find_duplicates(rep_lines)
    out["gopher_dup_line_frac"] = ratio(n, len(rep_lines))
    out["gopher_dup_line_char_frac"] = ratio(chars, len(text))
    for n in (2, 3, 4):
        out[f"gopher_top_{n}gram_frac"] = ratio(top_ngram_chars(words, n), len(text))
    for n in (5, 6, 7, 8, 9, 10):
        out[f"gopher_dup_{n}gram_frac"] = ratio(dup_ngram_chars(words, n), len(text))
    # C4 (datatrove's C4QualityFilter line rules, and C4ParagraphFilter)
    kept = sentences = 0
    lorem = curly = False
    for line in lines:
        line = line.strip()
        line_words = line.split()
        if any(len(w) > 1000 for w in line_words):
            continue
        line = C4_CITATION.sub("", line)
        if terminal_punct and (not line.endswith((".", "?", "!", '"', "'")) or line.endswith("...")):
            continue
        if len(line_words) < 3:
            continue
        low = line.lower()
        if "lorem ipsum" in low:
            lorem = True
            continue
        if "javascript" in low:
            continue
        if "{" in line:
            curly = True
            continue
        if any(p in low for p in C4_POLICY):
            continue
        kept += 1
        sentences += len(SENTENCE_BREAK.findall(line)) + 1
    out.update({"c4_lines_kept": kept, "c4_sentences": sentences, "c4_lorem_ipsum": lorem, "c4_curly_bracket": curly})
    by_len = sorted((len(x) for x in text.split("\n")), reverse=True)
    out["c4_third_longest_line"] = by_len[2] if len(by_len) >= 3 else 0
    # FineWeb
    nl = [x for x in text.split("\n") if x.strip() != ""]  # datatrove: non-blank lines
    out["fineweb_line_punct_frac"] = ratio(sum(bool(FINEWEB_END.search(x)) for x in nl), len(nl))
    out["fineweb_short_line_frac"] = ratio(sum(len(x) <= short_line_chars for x in nl), len(nl))
    out["fineweb_dup_line_char_frac"] = ratio(find_duplicates(nl)[1],
                                              len(text.replace("\n", "")))
    out["fineweb_newline_word_ratio"] = ratio(text.count("\n"), n_words)
    # URL
    url = json.loads(meta).get(url_field)
    out["url_domain"], out["url_tld"] = url_parts(url if isinstance(url, str) else None)
    return out


def langid(model, text: str) -> tuple[str | None, float | None]:  # noqa: ANN001 - a fastText model
    """Language and probability of one document, as the langid operator's document mode defines them."""
    line = re.sub(r"\s", " ", text)  # every whitespace character as a space, one for one
    if not any(unicodedata.category(c)[0] not in "ZC" for c in line):  # nothing visible
        return None, None
    (prob, label), = model.f.predict(line + "\n", 1, 0.0, "replace")
    return label.removeprefix("__label__"), min(float(prob), 1.0)


def join(table: dict[str, dict], ambiguous: set[str], meta: str, field: str) -> tuple[dict | None, str | None]:
    """(the table row, None) for a document whose meta field is a key of the table, else (None, reason)."""
    key = json.loads(meta).get(field)
    key = None if key is None else str(key)
    if key in ambiguous:
        return None, "join_ambiguous_key"
    row = table.get(key) if key is not None else None
    return (row, None) if row is not None else (None, "join_missing_key")


_M64 = (1 << 64) - 1


def sample_times(row_id: int, weight: float, seed: int) -> int:
    """How many times the sample operator keeps a document (splitmix64 of row_id and seed)."""
    x = (row_id + (seed * 0x9E3779B97F4A7C15 + 0x9E3779B97F4A7C15)) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    x ^= x >> 31
    u = (x >> 11) / float(1 << 53)
    whole = int(weight)
    return whole + (1 if u < weight - whole else 0)
