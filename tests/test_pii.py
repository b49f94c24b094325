"""PII redaction: typed placeholders, per-type precision and recall on the labelled set, the vectorised
engine equal to the plain per-document rules, counts per type in the catalog and the report."""

from __future__ import annotations

import ipaddress
import json
import random
from pathlib import Path

import polars as pl
import pytest

from benchmarks.pii import load_labelled, make_docs, redact_plain, score
from corpus import InputSpec, Pipeline
from corpus.catalog import Catalog
from corpus.stages import pii
from corpus.stages.pii import KINDS, PiiRedact, redact


def test_labelled_set_precision_and_recall_per_type():
    records = load_labelled()
    positives = [r for r in records if r["kind"]]
    assert len(positives) >= 200 and {r["kind"] for r in positives} == set(KINDS)
    assert sum(r["kind"] is None for r in records) >= 100  # hard negatives
    out, _ = redact(pl.Series([r["text"] for r in records]))
    scores = score(records, out.to_list())
    low = {k: s for k, s in scores.items() if s["precision"] < 0.95 or s["recall"] < 0.95}
    assert not low, f"below 0.95: {low}"


def test_each_type_and_its_near_misses():
    cases = {
        "Mail john.doe@example.com, not logo@2x.png": "Mail <EMAIL>, not logo@2x.png",
        "Call (415) 555-2671 or +44 20 7946 0958; ISBN 978-0-306-40615-7": "Call <PHONE> or <PHONE>; ISBN "
                                                                             "978-0-306-40615-7",
        "Visa 4111 1111 1111 1111, not 4111 1111 1111 1112": "Visa <CREDIT_CARD>, not 4111 1111 1111 1112",
        "IBAN DE89 3704 0044 0532 0130 00, not DE88 3704 0044 0532 0130 00": "IBAN <IBAN>, not DE88 3704 0044 0532 "
                                                                               "0130 00",
        "SSN 536-22-1234, not 666-22-1234 or 536-00-1234": "SSN <US_SSN>, not 666-22-1234 or 536-00-1234",
        "From 8.8.8.8 and 2a00:1450:4009:81f::200e, not 10.0.0.1, 192.0.2.1, fe80::1 or 1.2.3.4.5":
            "From <IP> and <IP>, not 10.0.0.1, 192.0.2.1, fe80::1 or 1.2.3.4.5",
        "key AKIAIOSFODNN7EXAMPLE; sha1 da39a3ee5e6b4b0d3255bfef95601890afd80709":
            "key <SECRET>; sha1 da39a3ee5e6b4b0d3255bfef95601890afd80709",
        "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----\nok": "<SECRET>\nok",
        "Nothing personal here, version 2.14.3 from 2024-05-06.": "Nothing personal here, version 2.14.3 from "
                                                                  "2024-05-06.",
    }
    out, counts = redact(pl.Series(list(cases)))
    assert out.to_list() == list(cases.values())
    assert counts["phone"].to_list()[1] == 2 and counts["ip"].to_list()[5] == 2
    assert [sum(c) for c in zip(*(counts[k] for k in KINDS), strict=True)] == [1, 2, 1, 1, 1, 2, 1, 1, 0]


def test_whole_email_address_with_underscore_unicode_local_part_or_idn_domain():
    """A dot-atom local part may start with "_" and hold letters of any script (RFC 6531), a domain may be
    internationalised: the whole address is replaced, where "_john@" was left alone (the "_" before the
    ASCII-only pattern's hit glued it) and "jöhn@" lost only "hn@..." ("ö" did not glue)."""
    cases = {
        "mail _john@example.com now": "mail <EMAIL> now",
        "mail jöhn@example.com now": "mail <EMAIL> now",
        "mail john@bücher.de now": "mail <EMAIL> now",
        "Почта: иван.петров@почта.рф.": "Почта: <EMAIL>.",
        "Ünïcödé.ñame+tag@exämple.org, x-y@example.com": "<EMAIL>, <EMAIL>",
        "請聯繫jöhn@bücher.de了解": "請聯繫<EMAIL>了解",  # Chinese around it is the sentence, not the address
        "**a_b@example.com** or 'x@example.org'": "**<EMAIL>** or '<EMAIL>'",
        # not addresses: dots doubled or last, a file name, a local part over 64 bytes, a label over 63
        "jö..hn@example.com jöhn.@example.com _ö@2x.png": "jö..hn@example.com jöhn.@example.com _ö@2x.png",
        "öö" + "a" * 61 + "@example.com": "öö" + "a" * 61 + "@example.com",
        "x@" + "ü" * 64 + ".de": "x@" + "ü" * 64 + ".de",
    }
    out, counts = redact(pl.Series(list(cases)))
    assert out.to_list() == list(cases.values())
    assert counts["email"].to_list() == [1, 1, 1, 1, 2, 1, 2, 0, 0, 0]


def test_hits_touching_words_of_other_scripts():
    """Chinese and Japanese put no space between words: a hit touching them is still a hit (only ASCII
    letters and digits glue a hit into a longer token)."""
    out, _ = redact(pl.Series(["服务器8.8.8.8已阻止，请联系ann@example.com。", "電話番号は03-1234-5678です",
                               "abc8.8.8.8 and 4111111111111111x"]))
    assert out.to_list() == ["服务器<IP>已阻止，请联系<EMAIL>。", "電話番号は<PHONE>です",
                             "abc8.8.8.8 and 4111111111111111x"]


def test_vectorised_rules_equal_the_plain_per_document_rules():
    """The batch engine (candidates marked, split into rows, checked as columns, joined back) gives
    exactly what the same rules give applied one document at a time with re.sub, counts included,
    also where hits touch or sit at the ends of texts."""
    rng = random.Random(7)
    texts = [r["text"] for r in load_labelled()]
    docs = make_docs(400, seed=3)
    glue = ["", " ", ".", "-", "\n", ",", "x", "5", "é", "日"]
    docs += [rng.choice(glue).join(rng.sample(texts, 3)) for _ in range(600)]
    docs += ["1.2.3.4.5.6.7.8", "8.8.8.8.9.9.9.9", "4111111111111111 4111111111111111", "a@b.com,c@d.org", "", "x"]
    # the length limits (a local part of at most 64 bytes, labels of at most 63 characters), Unicode parts
    docs += ["x" * 65 + "@example.com", "é" * 33 + "@example.com", "x" * 64 + "@example.com",
             "a@" + "b" * 64 + ".com", "a@" + "b" * 63 + ".com", "_jöhn@bücher.de now"]
    out, counts = redact(pl.Series(docs))
    for i, doc in enumerate(docs):
        text, want = redact_plain(doc)
        assert (out[i], {k: counts[k][i] for k in KINDS}) == (text, want), doc


def test_every_rule_writes_back_all_it_matches():
    """A rule rewrites a match as pre + hit + post: text matched outside those groups would be lost."""
    texts = pl.Series([r["text"] for r in load_labelled()])
    for rule in pii.RULES:
        assert texts.str.replace_all(rule.pattern, "${pre}${hit}${post}").to_list() == texts.to_list(), rule.pattern


def test_untouched_rows_stay_byte_identical_and_the_sentinel_may_occur():
    marker = pii.SENTINELS[0]
    docs = [f"text with the marker {marker} and mail a.b@example.org", "plain text, nothing to see", "é\u0301 ü"]
    out, _ = redact(pl.Series(docs))
    assert out.to_list() == [f"text with the marker {marker} and mail <EMAIL>", docs[1], docs[2]]


def test_public_ipv4_ranges_agree_with_ipaddress():
    """Our table of non-public IPv4 blocks against the ipaddress module's flags, on addresses drawn
    from each block and around its edges (ipaddress calls 100.64/10 and 192.0.0/24 neither private nor
    global in some versions: those two blocks are ours by definition)."""
    rng = random.Random(1)
    probes = [rng.getrandbits(32) for _ in range(3000)]
    for block in pii.NON_PUBLIC_V4:
        net = ipaddress.IPv4Network(block)
        probes += [int(net.network_address) - 1, int(net.network_address), int(net.broadcast_address),
                   int(net.broadcast_address) + 1]
    ours_only = [ipaddress.IPv4Network(b) for b in ("100.64.0.0/10", "192.0.0.0/24", "192.88.99.0/24")]
    for value in probes:
        if not 0 <= value < 1 << 32:
            continue
        ip = ipaddress.IPv4Address(value)
        theirs = not (ip.is_private or ip.is_multicast or ip.is_reserved or ip.is_loopback or ip.is_link_local
                      or ip.is_unspecified or any(ip in n for n in ours_only))
        assert pii.public_ipv4(value) == theirs, ip


def test_operator_counts_per_type_into_catalog_and_report(tmp_path: Path):
    src = tmp_path / "in"
    src.mkdir()
    rows = [{"text": "Write to ann@example.com or call +1 415 555 2671.", "src": "a"},
            {"text": "Card 4111-1111-1111-1111 from 8.8.4.4", "src": "a"},
            {"text": "Nothing here.", "src": "b"}, {"text": "Mail bob@example.org", "src": "b"}]
    for s in ("a", "b"):
        (src / f"{s}.jsonl").write_text("".join(json.dumps({"text": r["text"]}) + "\n" for r in rows if r["src"] == s))
    inputs = [InputSpec(source=s, path=str(src / f"{s}.jsonl")) for s in ("a", "b")]
    out = tmp_path / "out"
    res = Pipeline([PiiRedact()]).run(inputs, out, workers=2, quiet=True)
    data = pl.read_parquet(out / "data").sort("src_file")
    assert data["text"].to_list() == ["Write to <EMAIL> or call <PHONE>.", "Card <CREDIT_CARD> from <IP>",
                                      "Nothing here.", "Mail <EMAIL>"]
    got = Catalog(out / "catalog.duckdb", create=False).query(
        "SELECT source, counter, sum(value) FROM stage_counters WHERE run_id = ? AND value > 0 GROUP BY ALL "
        "ORDER BY ALL", [res.run_id])
    assert got == [("a", "pii_credit_card", 1), ("a", "pii_email", 1), ("a", "pii_ip", 1), ("a", "pii_phone", 1),
                   ("b", "pii_email", 1)]
    report = json.loads((out / "report.json").read_text())
    section = report["sections"]["stage-pii_redact"]
    assert section["title"] == "PII redaction"
    assert section["figures"]["01-pii_redact"]["totals"]["pii_email"] == 2
    assert section["figures"]["01-pii_redact"]["by_source"]["a"]["pii_phone"] == 1
    assert "&lt;CREDIT_CARD&gt;" in (out / "report.html").read_text()


def test_options():
    df = pl.DataFrame({"text": ["ann@example.com 8.8.8.8"]})
    out = PiiRedact(kinds=["email"], placeholder="[{kind}]").map(df)
    assert out["text"][0] == "[email] 8.8.8.8" and out["pii_ip"][0] == 0 and out["pii_email"][0] == 1
    with pytest.raises(ValueError, match="unknown PII kind"):
        PiiRedact(kinds=["passport"])
    with pytest.raises(ValueError, match="placeholder"):
        PiiRedact(placeholder="XXX")
