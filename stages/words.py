"""Words as datatrove's English word tokenizer splits them: spaCy's tokenizer (``spacy.blank("en")``),
tokens stripped and empty ones dropped, rebuilt as vectorised polars regex passes (no spaCy here).

spaCy's algorithm, per whitespace-separated chunk: a special case (a contraction, an abbreviation, an
emoticon) is taken whole; otherwise prefixes are stripped from the front and suffixes from the back
until none is left (stopping early at a special case), then the rest is one token if it is a URL, else
it is split at its infixes; last, neighbouring tokens that spell a special case ("):", ":)") are
merged. Each chunk is tokenized on its own, so the work is done once per *distinct* chunk and joined
back. Character classes follow spaCy's ``lang/char_classes.py`` and ``lang/punctuation.py`` (English
infixes); letters are Unicode's (``\\p{L}``) where spaCy lists scripts one by one, and "other symbols"
are Unicode's So. A token boundary is marked with NUL, which never occurs in a text (readers
quarantine it).
"""

from __future__ import annotations

import re
from functools import cache

import numpy as np
import polars as pl
import pyarrow as pa

SEP = "\x00"
_QUOTES = ("'\"\u201d\u201c`\u2018\u00b4\u2019\u201a,\u201e\u00bb\u00ab\u300c\u300d\u300e\u300f\uff08\uff09"
           "\u3014\u3015\u3010\u3011\u300a\u300b\u2329\u232a\u3008\u3009\u27e6\u27e7")
_PUNCT = ("\u2026,:;!?\u00bf\u061f\u00a1()[]{}<>_#*&\u3002\uff1f\uff01\uff0c\u3001\uff1b\uff1a\uff5e\u00b7"
          "\u0964\u060c\u06d4\u061b\u066a")
_UNITS = ("km km² km³ m m² m³ dm dm² dm³ cm cm² cm³ mm mm² mm³ ha µm nm yd in ft kg g mg µg t lb oz m/s km/h kmh "
          "mph hPa Pa mbar mb MB kb KB gb GB tb TB T G M K %").split()


def _cls(chars: str) -> str:
    return "".join(re.escape(c) for c in chars)


Q, P = _cls(_QUOTES), _cls(_PUNCT)
ICON, CURRENCY = r"\p{So}", r"\p{Sc}"
LOWER, UPPER, ALPHA = r"\p{Ll}\p{Lo}", r"\p{Lu}\p{Lo}", r"\p{L}"
# prefixes (one at a time from the front): these characters, "..", currencies, "+" unless a digit follows
_PREFIX_CHARS = f"§%=\u2014\u2013{P}{Q}{ICON}{CURRENCY}"
PREFIX = rf"[{_PREFIX_CHARS}+]|\.\.+|US\$|C\$|A\$"
# suffixes (from the back): these characters, "..", "'s", and "." after a digit, a lower-case letter,
# % ² - + or punctuation (or after two capitals); after a digit also "+", a currency or a unit
SUFFIX = rf"['\u2019][sS]|[{P}{Q}{ICON}\u2014\u2013]|\.\.+|\."
# (spaCy's class also holds "|", "(", "?" and ":" as written: its punctuation is an alternation pasted in)
_DOT_AFTER = rf"[0-9{LOWER}%²\-+|(?:{P}{Q}]$|[{UPPER}][{UPPER}]$"
_DIGIT_SUFFIX = r"^(.*[0-9])(" + "|".join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True)) \
    + rf"|{CURRENCY}|\+)$"
# spaCy's URL_MATCH without its IP-address branch (an IP has no infix, so stays one token anyway)
_HOST = r"[A-Za-z0-9\x{a1}-\x{ffff}]"
URL = (rf"^(?:[\w+\-.]{{2,}}://)?(?:.+(?::.*)?@)?(?:(?:{_HOST}[A-Za-z0-9\x{{a1}}-\x{{ffff}}_-]{{0,62}})?{_HOST}\.)+"
       rf"[{LOWER}]{{2,63}}(?::\d{{2,5}})?(?:[/?#]\S*)?$")
# English infixes as (before, infix, after): spaCy's lookbehind and lookahead become captured neighbours
_INFIXES = [
    (r"[0-9]", r"[+\-*^]", r"[0-9-]"),
    (rf"[{LOWER}{Q}]", r"\.", rf"[{UPPER}{Q}]"),
    (rf"[{ALPHA}]", ",", rf"[{ALPHA}]"),
    (rf"[{ALPHA}0-9]", r"-|\u2013|\u2014|--|---|\u2014\u2014|~", rf"[{ALPHA}]"),
    (rf"[{ALPHA}0-9]", r"[:<>=/]", rf"[{ALPHA}]"),
]
_ANYWHERE_INFIX = rf"\.\.+|\u2026|{ICON}"
_INFIX_CHARS = rf"[.,:<>=/+\-*^~\u2013\u2014\u2026{ICON}]"


def _specials() -> dict[str, tuple[str, ...]]:
    """spaCy's English tokenizer exceptions: each string and the tokens it becomes."""
    exc: dict[str, tuple[str, ...]] = {}

    def both(word: str, *rest: str) -> None:  # lower case and Title case
        for w in (word, word.title()):
            exc[w + "".join(rest)] = (w, *rest)

    for suffixes in (("'m",), ("m",), ("'m", "a"), ("m", "a")):
        both("i", *suffixes)
    tails = [("'ll",), ("ll",), ("'ll", "'ve"), ("ll", "ve"), ("'d",), ("d",), ("'d", "'ve"), ("d", "ve")]
    for pron in ("i", "you", "he", "she", "it", "we", "they"):
        for t in tails:
            both(pron, *t)
    for pron in ("i", "you", "we", "they"):
        both(pron, "'ve"), both(pron, "ve")
    for pron in ("you", "we", "they"):
        both(pron, "'re"), both(pron, "re")
    for pron in ("he", "she", "it"):
        both(pron, "'s"), both(pron, "s")
    plural = ("these", "those")
    for word in ("who", "what", "when", "where", "why", "how", "there", "that", "this", *plural):
        if word not in plural:
            both(word, "'s"), both(word, "s")
        for t in tails:
            both(word, *t)
        if word not in ("that", "this"):
            for t in (("'re",), ("re",), ("'ve",), ("ve",)):
                both(word, *t)
    for verb in ("ca", "could", "do", "does", "did", "had", "may", "might", "must", "need", "ought", "sha",
                 "should", "wo", "would"):
        for t in (("n't",), ("nt",), ("n't", "'ve"), ("nt", "ve")):
            both(verb, *t)
    for verb in ("could", "might", "must", "should", "would"):
        both(verb, "'ve"), both(verb, "ve")
    for verb in ("ai", "are", "is", "was", "were", "have", "has", "dare"):
        both(verb, "n't"), both(verb, "nt")
    for word in ("doin", "goin", "nothin", "nuthin", "ol", "somethin", "lovin", "havin"):
        for w in (word, word.title()):
            exc[w], exc[w + "'"] = (w,), (w + "'",)
    for word in ("em", "ll", "nuff"):
        exc[word], exc["'" + word] = (word,), ("'" + word,)
    for h in range(1, 13):
        for period in ("a.m.", "am", "p.m.", "pm"):
            exc[f"{h}{period}"] = (str(h), period)
    exc |= {"y'all": ("y'", "all"), "yall": ("y", "all"), "how'd'y": ("how", "'d", "'y"),
            "How'd'y": ("How", "'d", "'y"), "cannot": ("can", "not"), "Cannot": ("Can", "not"),
            "gonna": ("gon", "na"), "Gonna": ("Gon", "na"), "gotta": ("got", "ta"), "Gotta": ("Got", "ta"),
            "let's": ("let", "'s"), "Let's": ("Let", "'s"), "c'mon": ("c'm", "on"), "C'mon": ("C'm", "on")}
    for word in ("not", "Not"):
        exc[word + "'ve"], exc[word + "ve"] = (word, "'ve"), (word, "ve")
    whole = ("'S 's \u2018S \u2018s and/or w/o 're 'Cause 'cause 'cos 'Cos 'coz 'Coz 'cuz 'Cuz 'bout ma'am Ma'am "
             "o'clock O'clock 'd a.m. p.m. e.g. E.g. E.G. i.e. I.e. I.E. vs. v.s. co. Co. Corp. Inc. Ltd. Bros. "
             "Messrs. Mr. Mrs. Ms. Dr. Prof. Rev. Gen. Gov. Sen. Rep. Adm. Jr. St. Mt. Ph.D. D.C. "
             "Jan. Feb. Mar. Apr. Jun. Jul. Aug. Sep. Sept. Oct. Nov. Dec. "
             "Ak. Ala. Ariz. Ark. Calif. Colo. Conn. Del. Fla. Ga. Ia. Id. Ill. Ind. Kan. Kans. Ky. La. Mass. Md. "
             "Mich. Minn. Miss. Mo. Mont. N.C. N.D. N.H. N.J. N.M. N.Y. Neb. Nebr. Nev. Okla. Ore. Pa. S.C. "
             "Tenn. Va. Wash. Wis. ' '' C++ <space> \\t \\n \\\") \u2014 ä. ö. ü. "
             + " ".join(f"{c}." for c in "abcdefghijklmnopqrstuvwxyz"))
    emoticons = (r""":) :-) :)) :-)) :))) :-))) (: (-: =) (= :] :-] [: [-: [= =] :o) (o: :} :-} 8) 8-) (-8 ;) ;-) (; (-;
        :( :-( :(( :-(( :((( :-((( ): )-: =( >:( :') :'-) :'( :'-( :/ :-/ =/ =| :| :-| ]= =[ :1 :P :-P :p :-p :O :-O
        :o :-o :0 :-0 :() >:o :* :-* :3 :-3 =3 :> :-> :X :-X :x :-x :D :-D ;D ;-D =D xD XD xDD XDD 8D 8-D ^_^ ^__^
        ^___^ >.< >.> <.< ._. ;_; -_- -__- v.v V.V v_v V_V o_o o_O O_o O_O 0_o o_0 0_0 o.O O.o O.O o.o 0.0 o.0
        0.o @_@ <3 <33 <333 </3 (^_^) (-_-) (._.) (>_<) (*_*) (¬_¬) ಠ_ಠ ಠ︵ಠ (ಠ_ಠ) ¯\(ツ)/¯ (╯°□°）╯︵┻━┻
        ><(((*>""")
    for w in (*whole.split(), *emoticons.split()):
        exc[w] = (w,)
    for u in "cfkCFK":
        exc[f"°{u}."] = ("°", u, ".")
    for word in ("Ill", "ill", "Its", "its", "Hell", "hell", "Shell", "shell", "Shed", "shed", "were", "Were",
                 "Well", "well", "Whore", "whore"):
        exc.pop(word, None)
    # every string with an apostrophe also with a right single quotation mark
    exc |= {k.replace("'", "\u2019"): tuple(t.replace("'", "\u2019") for t in v) for k, v in exc.items() if "'" in k}
    return exc


SPECIALS = _specials()


def _join(parts: tuple[str, ...]) -> str:
    return SEP.join(parts)


def _where(mask: pl.Series, then: pl.Series, otherwise: pl.Series) -> pl.Series:
    return pl.select(pl.when(mask).then(then).otherwise(otherwise)).to_series()


def _on(rows: pl.Series, values: pl.Series, f, otherwise: pl.Series | None = None) -> pl.Series:
    """``f`` of the values where ``rows`` holds, elsewhere ``otherwise`` (default: the values as they
    are): a costly pattern runs only where it can match."""
    out = (values if otherwise is None else otherwise).clone()
    at = rows.arg_true()
    return out.scatter(at, f(values.gather(at))) if len(at) else out


def _affixes(words: pl.Series, specials: bool) -> pl.Series:
    """Each chunk with NUL between its tokens (before the merging of neighbouring tokens)."""
    pre = words.str.extract(f"^(?:{PREFIX})*", 0)
    rest = words.str.slice(pre.str.len_chars())
    suf = rest.str.extract(f"(?:{SUFFIX})*$", 0)
    core = rest.str.head(rest.str.len_chars() - suf.str.len_chars())
    # "+" is a prefix only when no digit follows
    plus = pre.str.ends_with("+") & core.str.contains(r"^[0-9]")
    pre, core = _where(plus, pre.str.strip_suffix("+"), pre), _where(plus, "+" + core, core)
    # a full stop is a suffix only after some characters: otherwise it stays on the core
    one_dot = suf.str.contains(r"^\.(?:[^.]|$)")
    dot = one_dot & core.str.contains(_DOT_AFTER).not_()
    if specials:  # stripping stops at a special case: the core, or the core with the full stop after it
        dot = dot | one_dot & (core + ".").is_in(list(_lookup()))
    core, suf = _where(dot, core + ".", core), _where(dot, suf.str.slice(1), suf)
    special = (core.replace_strict(_lookup(), default=None, return_dtype=pl.String) if specials
               else pl.Series([None] * len(core), dtype=pl.String))
    unit = core.str.extract_groups(_DIGIT_SUFFIX)
    num, unit = unit.struct.field("1"), unit.struct.field("2")
    split_core = num.fill_null(core)
    infixed = _on(split_core.str.contains(_INFIX_CHARS), split_core, _infixes)
    # a URL stays whole; one needs a full stop before two lower-case letters (its top-level domain)
    url = _on(split_core.str.contains(rf"\.[{LOWER}]{{2}}"), split_core, lambda c: c.str.contains(URL),
              otherwise=pl.Series([False] * len(core)))
    core_out = special.fill_null(_where(url, split_core, infixed) + SEP + unit.fill_null(""))
    return (pre.str.replace_all(PREFIX, f"{SEP}$0{SEP}") + SEP + core_out + SEP
            + suf.str.replace_all(SUFFIX, f"{SEP}$0{SEP}"))


def _infixes(core: pl.Series) -> pl.Series:
    out = core.str.replace_all(_ANYWHERE_INFIX, f"{SEP}$0{SEP}")
    for before, infix, after in _INFIXES:
        pattern = f"({before})({infix})({after})"

        def split(c: pl.Series, pattern: str = pattern) -> pl.Series:
            for _ in range(2):  # a neighbour taken by one match is the next one's: a second pass finds it
                c = c.str.replace_all(pattern, f"${{1}}{SEP}${{2}}{SEP}${{3}}")
            return c

        out = _on(out.str.contains(infix), out, split)
    return out


@cache
def _merge_forms() -> dict[str, str]:
    """Special cases that the affix rules cut into several tokens (")" and ":" for "):"): each cut
    form between NULs, longest first (spaCy takes the longest match, then the first), and the special
    case's tokens between NULs."""
    keys = [k for k in SPECIALS if len(k) > 1]
    cut = _tidy(_affixes(pl.Series(keys, dtype=pl.String), specials=False)).to_list()
    forms = {c: _join(SPECIALS[k]) for k, c in zip(keys, cut, strict=True) if SEP in c}
    return {f"{SEP}{c}{SEP}": f"{SEP}{forms[c]}{SEP}" for c in sorted(forms, key=len, reverse=True)}


def _tidy(marked: pl.Series) -> pl.Series:
    """NUL runs to one NUL, none at the ends."""
    return marked.str.replace_all(f"{SEP}+", SEP).str.strip_chars(SEP)


def split_chunks(chunks: pl.Series) -> pl.Series:
    """Each whitespace-free chunk as its tokens joined by NUL."""
    whole = chunks.replace_strict(_lookup(), default=None, return_dtype=pl.String)  # a special case as it stands
    # letters only, or letters and digits ending in a digit: no affix, infix or unit applies (most
    # chunks of a text)
    todo = (whole.is_null() & chunks.str.contains(r"^(?:\p{L}+|[\p{L}0-9]*[0-9])$").not_()).arg_true()
    out = whole.fill_null(chunks)
    if len(todo):
        part = chunks.gather(todo)
        simple = _one_affix(part)  # "(see", "here," "end.": many of the rest, without the full passes
        rest = simple.is_null()
        out.scatter(todo, _merge(simple.fill_null(_on(rest, part, lambda p: _first_affix_special(p).fill_null(
            _tidy(_affixes(p, specials=True))), otherwise=simple))))
    return out


def _one_affix(words: pl.Series) -> pl.Series:
    """Letters with one bracket or quote before them, or one punctuation mark after them, split (null
    for any other chunk): the prefix or suffix comes off, the letters are a special case or a token."""
    g = words.str.extract_groups(r"^([(\[\"']?)(\p{L}+)([,;:!?)\]\"'.]?)$")
    pre, core, suf = g.struct.field("1"), g.struct.field("2"), g.struct.field("3")
    one = (pre == "") ^ (suf == "")
    # a full stop after a capital that follows no capital stays on the word ("A.")
    dot_stays = (suf == ".") & core.str.contains(_DOT_AFTER).not_()
    core_tokens = core.replace_strict(_lookup(), default=None, return_dtype=pl.String).fill_null(core)
    split = _tidy(pre + SEP + core_tokens + SEP + suf)
    return pl.select(pl.when(one & dot_stays).then(words).when(one).then(split)).to_series()


def _first_affix_special(words: pl.Series) -> pl.Series:
    """spaCy stops stripping as soon as what is left is a special case; the runs above check the core
    only, so here the chunk less its first prefix ("(" then ":)"), else less its last suffix."""
    lookup = _lookup()
    pre = words.str.extract(f"^(?:{PREFIX})", 0).fill_null("")
    minus_pre = words.str.slice(pre.str.len_chars())
    suf = words.str.extract(f"(?:{SUFFIX})$", 0).fill_null("")
    minus_suf = words.str.head(words.str.len_chars() - suf.str.len_chars())
    special_pre = minus_pre.replace_strict(lookup, default=None, return_dtype=pl.String)
    special_suf = minus_suf.replace_strict(lookup, default=None, return_dtype=pl.String)
    return pl.select(
        pl.when((pre != "") & special_pre.is_not_null()).then(pre + SEP + special_pre)
        .when((suf != "") & special_suf.is_not_null()).then(special_suf + SEP + suf)).to_series()


@cache
def _lookup() -> dict[str, str]:
    return {k: _join(v) for k, v in SPECIALS.items()}


def _merge(marked: pl.Series) -> pl.Series:
    """Neighbouring tokens that spell a special case become its tokens."""
    forms = _merge_forms()
    out = SEP + marked + SEP
    for _ in range(2):  # overlapping neighbours: the second pass takes what the first one's match touched
        out = out.str.replace_many(list(forms), list(forms.values()), leftmost=True)
    return _tidy(out)


def _chunk_tokens(flat: pl.Series, key: pl.Series) -> pl.Series | None:
    """Each chunk's tokens, each distinct chunk split once and joined back by ``key``. A 64-bit hash
    joins much faster than the strings; it is checked to have sent every chunk its own tokens (None
    where a collision would have sent another chunk's)."""
    key = key.rename("k")
    first = key.is_first_distinct().arg_true()
    distinct = flat.gather(first)
    table = pl.DataFrame({"k": key.gather(first), "c": distinct, "t": split_chunks(distinct).str.split(SEP)})
    joined = key.to_frame().join(table, on="k", how="left", maintain_order="left")
    if not joined["c"].eq_missing(flat).all():
        return None
    return joined["t"]


def split_words(text: pl.Series, whitespace_word: str) -> pl.Series:
    """Each text's tokens (a list per text), as datatrove's ``split_into_words`` for English.
    ``whitespace_word`` is the pattern of a whitespace-separated chunk."""
    chunks = text.str.extract_all(whitespace_word).fill_null([])  # a null text has no words
    flat = chunks.explode(empty_as_null=False)
    tokens = _chunk_tokens(flat, flat.hash(seed=0))
    if tokens is None:  # two distinct chunks share a 64-bit hash: key by the strings themselves
        tokens = _chunk_tokens(flat, flat)
    per_doc = np.bincount(np.repeat(np.arange(len(text)), chunks.list.len().to_numpy()),
                          weights=tokens.list.len().to_numpy(), minlength=len(text))
    offsets = np.concatenate([[0], np.cumsum(per_doc)]).astype(np.int32)
    values = tokens.explode(empty_as_null=False).to_arrow()
    return pl.Series(pa.ListArray.from_arrays(pa.array(offsets), values))
