"""stages.profile.jsonscan against the reader's per-record rules (DocBuilder.add_line), line by line."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from corpus.readers.base import InputSpec, ReadTask
from corpus.readers.jsonl import JSON_BLANK, DocBuilder
from corpus.stages.profile.jsonscan import TYPES, scan_piece

WORDS = ["alpha", "beta", "gamma", "x", "naïve", "café", "中文", "日本語", "😀", "𝔘", "\u2028", "Ωmega", "déjà"]
SPICE = ['"', "\\", "/", "\n", "\t", "\r", "\b", "\f", "\x01", "\x1f", "\x7f", "\u00a0", " ", "\u3000", "\ud7ff"]


def _text(rng: random.Random) -> str:
    parts = [rng.choice(WORDS + SPICE) if rng.random() < 0.5 else rng.choice(WORDS) for _ in range(rng.randint(1, 12))]
    s = " ".join(parts)
    if rng.random() < 0.2:
        s = " \t" + s + "\n "
    if rng.random() < 0.1:
        s = "word " * rng.randint(20, 60)  # long plain runs
    return s if s.strip() else s + "z"


def _meta(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(9 if depth < 3 else 7)
    if kind == 0:
        return _text(rng)
    if kind == 1:
        return rng.choice([0, -1, 7, 10**17, -(10**30), rng.randint(-(10**6), 10**6)])
    if kind == 2:
        return rng.choice([0.5, -1.25e-7, 3e20, 1.0, rng.random() * 1000])
    if kind == 3:
        return rng.random() < 0.5
    if kind == 4:
        return None
    if kind == 5:
        return {}
    if kind == 6:
        return []
    if kind == 7:
        return {rng.choice(["k", "a b", "ключ", "x\ny"]): _meta(rng, depth + 1) for _ in range(rng.randint(1, 3))}
    return [_meta(rng, depth + 1) for _ in range(rng.randint(1, 3))]


def _dumps(rng: random.Random, value: object) -> str:
    if rng.random() < 0.5:
        return json.dumps(value, ensure_ascii=rng.random() < 0.5)
    return json.dumps(value, ensure_ascii=rng.random() < 0.5, separators=(",", ":"))


def _valid(rng: random.Random, text_key: str, id_key: str | None) -> bytes:
    """A record the scanner must accept (status 0)."""
    items: list[tuple[str, str]] = [(text_key, _dumps(rng, _text(rng)))]
    if id_key not in (None, text_key) and rng.random() < 0.8:
        big = rng.randint(-(10**17), 10**18 - 1)
        ident = rng.choice([f"doc-{rng.randint(0, 999)}", "ид-é", "😀", "", big, 0, None])
        items.append((id_key, _dumps(rng, ident)))
    for k in rng.sample(["url", "score", "tags", "meta", "flag", "n", "ключ", "", "a b"], rng.randint(0, 5)):
        items.append((k, _dumps(rng, _meta(rng))))
    rng.shuffle(items)
    sep = rng.choice([",", ", ", " ,\t", ","])
    colon = rng.choice([":", ": ", " : ", ":\t"])
    body = sep.join(json.dumps(k, ensure_ascii=False) + colon + v for k, v in items)
    line = rng.choice(["", " ", "\t "]) + "{" + rng.choice(["", " "]) + body + rng.choice(["", " "]) + "}"
    line += rng.choice(["", "", " ", "\r", " \t\r"])
    return line.encode()


# Hand-written records that are valid and must be status 0 too (escapes json.dumps never writes).
HAND_VALID = [
    rb'{"text": "a\/b \u00e9\u00E9 \ud83d\ude00 \u0041 \"q\" \\ \b\f\n\r\t"}',
    rb'{"text":"x","id":"\u00e9\ud83d\ude00"}',
    rb'{"text":"x","id":-123456789012345678}',
    rb'{"text":"x","id":0,"m":[1,-0,0.5e+10,1E-5,-1.5,{"a":[[],{}]},"s",true,false,null]}',
    b'{"text":"\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80\xed\x9f\xbf\xee\x80\x80\xf4\x8f\xbf\xbf"}',
    rb'{"text":"x","dup":{"a":1,"a":2}}',
    rb'{"text":"\u0085 \u2000 z"}',
    b'{"text":"x","deep":' + b"[" * 63 + b"]" * 63 + b"}",
    b'\t {"text" :"x"} \r\r',
]

# Records the reader does not turn into a document (or that the scanner may leave to it).
BROKEN = [
    b'{"text": "abc"',
    b'{"text": "abc}',
    b'{"text": "a\xffb"}',
    b'{"text": "a\xc3"}',
    b'{"text": "\xed\xa0\x80"}',
    b'{"text": "\xc0\xaf"}',
    b'{"text": "\xf4\x90\x80\x80"}',
    b'{"text": "x", "m": "\xe2\x82"}',
    b'{"t\xc3\xa9xt": "x", "\xff": 1}',
    rb'{"text": "lone \ud800 high"}',
    rb'{"text": "lone \udc00 low"}',
    rb'{"text": "pair? \ud800\u0041"}',
    rb'{"text": "nul \u0000 here"}',
    rb'{"text": "x", "id": "\ud800"}',
    rb'{"text": "bad \x escape"}',
    rb'{"text": "bad \u12g4 escape"}',
    b'{"text": "raw\x01control"}',
    b'{"text": "raw\ttab"}',
    b'{"text": "x", "score": NaN}',
    b'{"text": "x", "score": Infinity}',
    b'{"text": "x", "score": -Infinity}',
    b'{"text": "x", "score": 1e400}',
    b'{"text": "x", "score": 1e999}',
    b'{"text": "x", "score": 01}',
    b'{"text": "x", "score": 1.}',
    b'{"text": "x", "score": .5}',
    b'{"text": "x", "score": -}',
    b'{"text": "x", "score": +1}',
    b'{"text": "x", "score": 1e}',
    b'{"text": "x", "score": 0x10}',
    b'{"text": "x", "big": ' + b"9" * 5000 + b"}",
    b'{"text": "x", "text": "y"}',
    b'{"text": "x", "a": 1, "a": 2}',
    b'{"text": "x", "id": 1, "id": 2}',
    b'{"id": "a"}',
    b'{"text": null}',
    b'{"text": 5}',
    b'{"text": ["x"]}',
    b'{"text": {"a": "b"}}',
    b'{"text": true}',
    b'{"text": ""}',
    b'{"text": "  \\n\\t "}',
    rb'{"text": "\u3000\u2029\u00a0\u0085\u001c"}',
    b'{"text": "x", "id": 1.5}',
    b'{"text": "x", "id": 1e3}',
    b'{"text": "x", "id": true}',
    b'{"text": "x", "id": [1]}',
    b'{"text": "x", "id": {"a": 1}}',
    b'{"text": "x", "id": -0}',
    b'{"text": "x", "id": 1234567890123456789}',
    b'["text", "x"]',
    b'"text"',
    b"42",
    b"null",
    b'{"text": "x"} trailing',
    b'{"text": "x"}{"text": "y"}',
    b'{"text": "x",}',
    b'{"text": "x" "a": 1}',
    b'{"text": "x", "m": [1,]}',
    b'{"text": "x", "m": [1 2]}',
    b'{"text": "x", "m": {"a" 1}}',
    b'{"text": "x", "m": {1: 2}}',
    b'{"text": "x", "m": tru}',
    b'{"text": "x", "m": nul}',
    b'{"text": "x", "m": True}',
    b'{text: "x"}',
    b"{'text': 'x'}",
    b'\xef\xbb\xbf{"text": "x"}',
    b'{"text": "x"}\x0c',
    b'\x0b{"text": "x"}',
    b'{"text": "x", "deep": ' + b"[" * 70 + b"]" * 70 + b"}",
    b'{"text": "x", "deep": ' + b"[" * 3000 + b"]" * 3000 + b"}",
    b'{"te\\u0078t": "x"}',
    b'{"text": "x", "\\u002a": 1}',
    b"{",
    b"}",
    b"{}",
    b"x",
]


def _task(text_key: str, id_key: str | None, max_bytes: int) -> ReadTask:
    spec = InputSpec(source="src", text_key=text_key, id_key=id_key, max_doc_bytes=max_bytes)
    return ReadTask(spec=spec, path="/nonexistent/f.jsonl", rel_path="f.jsonl", format="jsonl", index=0)


def _split(buf: bytes) -> list[bytes]:
    lines = buf.split(b"\n")
    if buf.endswith(b"\n") or not buf:  # an empty buffer has no line
        lines.pop()
    return lines


def _type_of(value: object) -> int:
    if isinstance(value, bool):
        return TYPES.index("boolean")
    if isinstance(value, int):
        return TYPES.index("integer")
    if isinstance(value, float):
        return TYPES.index("number")
    if isinstance(value, str):
        return TYPES.index("string")
    return TYPES.index("object" if isinstance(value, dict) else "array")


def _check(buf: bytes, text_key: str, id_key: str | None, max_bytes: int) -> tuple[np.ndarray, list[bytes]]:
    """Scan buf and compare every line with DocBuilder; returns the statuses and the lines."""
    lines = _split(buf)
    n_lines = buf.count(b"\n") + (0 if buf.endswith(b"\n") or not buf else 1)
    assert len(lines) == n_lines
    got = scan_piece(buf, text_key, id_key, max_bytes)
    assert got is not None
    assert got.status.shape == (n_lines,) and got.status.dtype == np.int8

    b = DocBuilder(_task(text_key, id_key, max_bytes))
    for i, ln in enumerate(lines):
        if ln.strip(JSON_BLANK):
            b.add_line(ln, i)
    # b.rows, not b.finish(): the reader's DataFrame refuses an id with a lone surrogate escape.
    docs = {row: (doc_id, text) for doc_id, text, _, row in b.rows}

    for i, ln in enumerate(lines):
        assert (got.status[i] == 1) == (not ln.strip(JSON_BLANK)), ln
    assert np.array_equal(got.doc_line, np.flatnonzero(got.status == 0))
    n_docs = len(got.doc_line)
    assert got.text_offs.shape == (n_docs + 1,) and got.id_offs.shape == (n_docs + 1,)
    assert got.id_given.shape == (n_docs,)
    assert got.text.ctypes.data % 8 == 0
    end = int(got.text_offs[-1])
    assert len(got.text) >= end + 8 and not got.text[end : end + 8].any()
    for d, row in enumerate(got.doc_line):
        assert row in docs, lines[row]
        doc_id, text = docs[row]
        assert bytes(got.text[got.text_offs[d] : got.text_offs[d + 1]]).decode() == text, lines[row]
        given = bytes(got.ids[got.id_offs[d] : got.id_offs[d + 1]]).decode()
        if got.id_given[d]:
            assert given == doc_id, lines[row]
        else:
            assert given == "" and doc_id == f"src:f.jsonl:{row}", lines[row]

    # Meta keys and types of the documents, counted from json.loads.
    keys: list[str] = []
    counts: dict[str, list[int]] = {}
    for row in got.doc_line:
        for k, v in json.loads(lines[row]).items():
            if k in (text_key, id_key):
                continue
            if k not in counts:
                keys.append(k)
                counts[k] = [0] * len(TYPES)
            if v is not None:
                counts[k][_type_of(v)] += 1
    assert got.keys == keys
    assert got.key_types.shape == (len(keys), len(TYPES))
    assert got.key_types.tolist() == [counts[k] for k in keys]
    return got.status, lines


@pytest.mark.parametrize(("text_key", "id_key"), [("text", "id"), ("text", None), ("body", "text"), ("text", "text")])
def test_differential(text_key: str, id_key: str | None) -> None:
    rng = random.Random(f"{text_key}-{id_key}")
    valid = [_valid(rng, text_key, id_key) for _ in range(1500)]
    if text_key == "text":
        valid += HAND_VALID
    other = [ln.replace(b'"text"', json.dumps(text_key).encode()) for ln in BROKEN] + [b"", b" ", b"\t\r", b"\r"]
    # Valid records cut short, with a byte flipped, or too large for the limit.
    for ln in rng.sample(valid, 300):
        cut = rng.randrange(1, len(ln))
        other.append(ln[:cut])
        pos = rng.randrange(len(ln))
        other.append(ln[:pos] + bytes([rng.choice(b'"\\{}[],:0e. \xff\x80\x00\x0a'[:-1])]) + ln[pos + 1 :])
    lines = [(ln, True) for ln in valid] + [(ln, False) for ln in other]
    rng.shuffle(lines)
    buf = b"\n".join(ln for ln, _ in lines)
    crlf = b"\r\n".join(ln for ln, _ in lines) + b"\r\n"
    for data in (buf, buf + b"\n", crlf):
        status, _ = _check(data, text_key, id_key, 1 << 20)
        for i, (ln, ok) in enumerate(lines):
            if ok:
                assert status[i] == 0, ln
    # A small size limit: the longer texts are too large and must not be documents.
    status, _ = _check(buf, text_key, id_key, 12)
    assert 0 < int((status == 0).sum()) < len(valid)


def test_edges() -> None:
    _check(b"", "text", "id", 100)
    _check(b"\n\n", "text", "id", 100)
    _check(b'{"text": "x"}', "text", "id", 100)
    _check(b'{"text": "x"}\n{"text": "', "text", "id", 100)
    _check(b'{"text": "x", "id": "a"}\n{"text": "xy"}', "text", "id", 1)
    # Keys and types come from documents only; a key's null values are not counted.
    buf = b'{"text": "", "bad": 1}\n{"text": "x", "n": null, "m": 1}\n{"text": "y", "n": "s", "m": 2}'
    status, _ = _check(buf, "text", None, 100)
    assert status.tolist() == [2, 0, 0]
    # Long plain runs around every alignment and block size, with specials at each position.
    rng = random.Random(7)
    lines = []
    for n in range(0, 80):
        s = "".join(rng.choice("ab c") for _ in range(n)) + "z"
        lines.append(json.dumps({"text": s, "id": s}).encode())
        lines.append(json.dumps({"text": s + "é" + s, "m": s}, ensure_ascii=False).encode())
        lines.append(json.dumps({"text": s + "\n" + s}).encode())
    status, _ = _check(b"\n".join(lines), "text", "id", 1 << 20)
    assert (status == 0).all()


def test_hands_over_pieces_polars_must_read() -> None:
    def piece(*records: dict) -> bytes:
        return b"\n".join(json.dumps(r).encode() for r in records) + b"\n"

    many = piece(*({"text": "x", f"k{i}": i} for i in range(65)))
    assert scan_piece(many, "text", None, 100) is None
    at_limit = piece(*({"text": "x", f"k{i}": i} for i in range(64)))
    got = scan_piece(at_limit, "text", None, 100)
    assert got is not None and len(got.keys) == 64
    for key in ("*", "^a$", "^$"):
        assert scan_piece(piece({"text": "x"}, {"text": "y", key: 1}), "text", None, 100) is None
    assert scan_piece(piece({"text": "x"}), "*", None, 100) is None
    # Not wildcards for pl.col()
    assert scan_piece(piece({"text": "x", "^a": 1, "a$": 2, "a*": 3}), "text", None, 100) is not None


def test_utf8_validation() -> None:
    # Random bytes around every UTF-8 edge, in keys, texts and meta strings, across block boundaries:
    # a line is a document exactly when it decodes.
    rng = random.Random(3)
    edge = [0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1, 0xED, 0xEF, 0xF0,
            0xF1, 0xF4, 0xF5, 0xFF]
    valid = ["é", "中", "😀", "\ud7ff", "\ue000", "\U0010ffff", "\u0800", "\u0080", "a"]
    lines = []
    for _ in range(3000):
        if rng.random() < 0.5:
            s = bytes(rng.choice(edge) for _ in range(rng.randint(1, 6)))
        else:  # a valid text with one byte changed
            s = bytearray("".join(rng.choice(valid) for _ in range(rng.randint(1, 8))).encode())
            s[rng.randrange(len(s))] = rng.choice(edge)
            s = bytes(s)
        pad = b"a" * rng.randint(0, 70)
        where = rng.randrange(3)
        if where == 0:
            lines.append(b'{"text": "x' + pad + s + pad + b'"}')
        elif where == 1:
            lines.append(b'{"text": "x", "m' + pad + s + b'": 1}')
        else:
            lines.append(b'{"text": "x", "m": ["' + pad + s + b'"]}')
    status = np.concatenate([_check(b"\n".join(lines[i : i + 50]), "text", None, 1 << 20)[0]
                             for i in range(0, len(lines), 50)])  # pieces of at most 64 keys
    for ln, st in zip(lines, status, strict=True):
        try:
            ln.decode()
            ok = True
        except UnicodeDecodeError:
            ok = False
        assert (st == 0) == ok, ln


def test_many_short_lines_grow_the_line_arrays():
    """The scanner sizes its per-line arrays from the buffer and doubles them as lines come: short
    records (100k lines in 1.7 MB, far more than the first guess) all get their status and text."""
    buf = b"".join(b'{"text": "t%d"}\n' % i if i % 1000 else b"\n" for i in range(100_000))
    got = scan_piece(buf, "text", None, 100)
    assert len(got.status) == 100_000 and int((got.status == 1).sum()) == 100
    assert len(got.doc_line) == 99_900 and got.doc_line[-1] == 99_999
    last = bytes(got.text[got.text_offs[-2]:got.text_offs[-1]])
    assert last == b"t99999"


def test_output_buffers_are_reused_only_when_nothing_holds_them():
    """A thread's next scan writes into its last buffers only once no piece or text holds them: a
    live piece's text is never overwritten."""
    from corpus.stages.profile import jsonscan

    a = scan_piece(b'{"text": "first"}\n', "text", None, 100)
    held = id(jsonscan._SPARE.text)
    b = scan_piece(b'{"text": "second"}\n', "text", None, 100)
    assert id(jsonscan._SPARE.text) != held
    assert bytes(a.text[:5]) == b"first" and bytes(b.text[:6]) == b"second"
    del a, b
    free = id(jsonscan._SPARE.text)
    c = scan_piece(b'{"text": "third"}\n', "text", None, 100)
    assert id(jsonscan._SPARE.text) == free and bytes(c.text[:5]) == b"third"
