"""PII redaction: precision and recall per type on the labelled set, and speed beside plain Python.

Quality: `tests/data/pii_labelled.jsonl` (written by `tests/data/make_pii_set.py`: over 200 positives
across the seven types and hard negatives: versions, dates, ISBNs, hashes, UUIDs, invalid Luhn and
IBAN check digits, private addresses, product codes shaped like phone numbers). Each record holds at
most one labelled value; a positive counts as found only if the output is exactly the text with that
value replaced by its placeholder (a partial or overlong match is a miss and a false positive), and
every other placeholder in an output is a false positive of its type. Goal: precision and recall
>= 0.95 per type (tests/test_pii.py asserts it).

Speed: `corpus.stages.pii.redact` on batches against `redact_plain`, the same rules as a plain
per-document Python loop (`re.sub` with a callback per candidate, checks in Python), one process, on
web-like documents with PII sprinkled in. `python -m benchmarks pii --docs 20000`.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import re
import time
from pathlib import Path

import polars as pl

from benchmarks.common import table
from corpus.stages import pii

W = pii.WORD
LABELLED = Path(__file__).resolve().parent.parent / "tests" / "data" / "pii_labelled.jsonl"


# ---------------------------------------------------------------- the same rules, one document at a time


def _luhn(d: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(d)):
        x = int(ch)
        total += (x * 2 - 9 if x >= 5 else x * 2) if i % 2 else x
    return total % 10 == 0


def _isolated(before: str, after: str, before_bad: str, after_bad: str) -> bool:
    return not (re.match(f"[{before_bad}]", before) or re.match(f"[{after_bad}]", after)
                or re.match(r"[.,]\d", after))


def _one_separator(hit: str) -> bool:
    return len(set(re.findall(r"\D", hit))) <= 1


def _check(kind: str, rule: pii.Rule, hit: str, before: str, after: str, context: str) -> bool:
    digits = re.sub(r"\D", "", hit)
    if rule.check is None:
        return True
    if rule.check is pii._token:
        return not re.match(r"[0-9A-Za-z_-]", after)
    if kind == "email":
        local, domain = hit.split("@", 1)
        tld = domain.rsplit(".", 1)[-1].lower()
        too_long = len(local.encode()) > 64 or any(len(label) > 63 for label in domain.split("."))
        return (_isolated(before, after, f"{W}.%+-", f"{W}@-") and ".." not in local and not local.endswith(".")
                and not too_long and tld not in pii.FILE_EXTENSIONS)
    if kind == "iban":
        compact = hit.replace(" ", "")
        numeric = "".join(str(int(c, 36)) for c in compact[4:] + compact[:4])
        return (_isolated(before, after, f"{W}", f"{W}") and len(compact) == pii.IBAN_LENGTHS.get(compact[:2], 0)
                and int(numeric) % 97 == 1)
    if kind == "credit_card":
        issuer = any(re.match(f"(?:{p})", digits) and len(digits) in lengths for p, lengths in pii.CARD_ISSUERS)
        return _isolated(before, after, f"{W}-", f"{W}-") and issuer and _luhn(digits) and _one_separator(hit)
    if kind == "us_ssn":
        area, group, serial = digits[:3], digits[3:5], digits[5:]
        return (_isolated(before, after, f"{W}-", f"{W}-") and area not in ("000", "666") and area[0] != "9"
                and group != "00" and serial != "0000" and digits not in pii.SSN_NEVER_ISSUED
                and _one_separator(hit))
    if kind == "ip" and ":" in hit:
        return _isolated(before, after, f"{W}:.", f"{W}:") and pii.public_ipv6(hit) and hit.count(":") >= 2
    if kind == "ip":
        octets = hit.split(".")
        if re.search(r"(?:^|\.)0\d", hit) or max(map(int, octets)) > 255:
            return False
        return _isolated(before, after, f"{W}.", f"{W}") and pii.public_ipv4(int(ipaddress.IPv4Address(hit)))
    if kind == "phone":
        n = len(digits)
        if re.match(r"(?:\+|00[1-9])", hit):
            size = 8 <= n <= 15 + (2 if hit.startswith("00") else 0)
        elif re.match(r"\(?0[1-9]", hit):
            size = 9 <= n <= 12
        else:
            local = digits[1:11] if n == 11 else digits[:10]
            size = not hit.startswith("0") and bool(re.match(r"[2-9]\d\d[2-9]", local))
        other = re.fullmatch(r"\d{3}-\d{2}-\d{4}|\d{1,3}(?:\.\d{1,3}){3}", hit)
        return (_isolated(before, after, f"{W}/#.+-", f"{W}/-") and size and not other
                and not re.search(pii.PHONE_CONTEXT, context))
    raise ValueError(kind)


def redact_plain(text: str, kinds: tuple[str, ...] = pii.KINDS) -> tuple[str, dict[str, int]]:
    """The redaction of one document in plain Python: ``re.sub`` per rule, a callback per candidate."""
    counts = dict.fromkeys(kinds, 0)
    for rule in pii.RULES:
        if rule.kind not in kinds:
            continue
        pattern = re.compile(rule.pattern.replace(pii.ASCII_BOUNDARY, r"(?a:\b)"))
        last_hit_end = [0]
        current = text

        def sub(m: re.Match, rule: pii.Rule = rule, current: str = current, last_hit_end: list = last_hit_end) -> str:
            start, end = m.span("hit")
            before = current[start - 1] if start else ""
            context = current[max(last_hit_end[0], start - pii.CONTEXT_CHARS):start]
            last_hit_end[0] = end
            hit = m.group("hit")
            ok = _check(rule.kind, rule, hit, before, current[end:end + 2], context)
            counts[rule.kind] += ok
            pre = m.groupdict().get("pre") or ""
            post = m.groupdict().get("post") or ""
            return pre + (f"<{rule.kind.upper()}>" if ok else hit) + post

        text = pattern.sub(sub, current)
    return text, counts


# ---------------------------------------------------------------- scoring


def load_labelled(path: Path = LABELLED) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def score(records: list[dict], outputs: list[str]) -> dict[str, dict[str, float]]:
    """Per type: tp, fp, fn, precision, recall (see the module docstring for what counts)."""
    tp, fp, fn = (dict.fromkeys(pii.KINDS, 0) for _ in range(3))
    for rec, out in zip(records, outputs, strict=True):
        kind = rec["kind"]
        exact = kind is not None and out == rec["text"].replace(rec["value"], f"<{kind.upper()}>", 1)
        if kind is not None:
            (tp if exact else fn)[kind] += 1
        for k in pii.KINDS:
            fp[k] += out.count(f"<{k.upper()}>") - (1 if exact and k == kind else 0)
    return {k: {"tp": tp[k], "fp": fp[k], "fn": fn[k], "precision": tp[k] / max(1, tp[k] + fp[k]),
                "recall": tp[k] / max(1, tp[k] + fn[k])} for k in pii.KINDS}


# ---------------------------------------------------------------- speed corpus

_FILLER = ("the of and to in is was for on that with as by at from his her it an were are which this be or has "
           "had not but first new after also one two time year city world people state school river music "
           "version 2.1.3 released on 2024-05-06 see section 4.2 and ISBN 978-0-306-40615-7 for details").split()


def make_docs(n: int, seed: int = 0) -> list[str]:
    """Web-like documents (~1.5 KB) where about one in four carries a labelled value."""
    rng = random.Random(seed)
    values = [r["text"] for r in load_labelled()]
    docs = []
    for _ in range(n):
        lines = [" ".join(rng.choice(_FILLER) for _ in range(rng.randint(6, 18))) for _ in range(rng.randint(6, 14))]
        if rng.random() < 0.25:
            lines.insert(rng.randrange(len(lines) + 1), rng.choice(values))
        docs.append("\n".join(lines))
    return docs


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks pii", description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=20000, help="documents for the speed figure")
    ap.add_argument("--batch", type=int, default=5000, help="documents per batch for the vectorised path")
    args = ap.parse_args(argv)

    records = load_labelled()
    out, _ = pii.redact(pl.Series([r["text"] for r in records]))
    scores = score(records, out.to_list())
    print(f"labelled set: {len(records)} records, {sum(r['kind'] is not None for r in records)} positives")
    print(table([{"type": k, "tp": s["tp"], "fp": s["fp"], "fn": s["fn"], "precision": f"{s['precision']:.3f}",
                  "recall": f"{s['recall']:.3f}"} for k, s in scores.items()],
                ["type", "tp", "fp", "fn", "precision", "recall"]))

    docs = make_docs(args.docs)
    mb = sum(len(d.encode()) for d in docs) / 1e6
    t = time.perf_counter()
    for i in range(0, len(docs), args.batch):
        pii.redact(pl.Series(docs[i:i + args.batch]))
    ours = time.perf_counter() - t
    t = time.perf_counter()
    for d in docs:
        redact_plain(d)
    plain = time.perf_counter() - t
    rows = [{"path": name, "docs/s": f"{len(docs) / s:,.0f}", "MB/s": f"{mb / s:.1f}", "seconds": f"{s:.2f}"}
            for name, s in (("pii.redact (polars batches)", ours), ("plain per-document Python", plain))]
    print(f"\n{len(docs):,} documents, {mb:.1f} MB, one process")
    print(table(rows, ["path", "docs/s", "MB/s", "seconds"]))
    print(f"ours / plain: {plain / ours:.2f}x")
