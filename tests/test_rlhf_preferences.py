"""Preference formats, their reader (bad records quarantined with a reason) and the aggregation across
annotators: closed-form statistics and planted annotator biases."""

from __future__ import annotations

import gzip
import json
import math
import random

import pytest

from corpus.plugins.preferences import (
    Preference,
    Task,
    aggregate,
    bradley_terry,
    consensus_margin,
    is_ranking,
    item_id_for,
    kendall_distance,
    kendalls_w,
    krippendorff_alpha,
    preference_report_html,
    ranking_json,
    read_preferences,
    read_tasks,
    spearman,
    wins_matrix,
    write_preference_report,
)

GOOD = [
    {"item_id": "a", "annotator": "ann1", "prompt": "p", "responses": ["x", "y", "z"], "ranking": [1, 2, 2],
     "aspects": {"helpfulness": {"0": 5, "1": 3.5}}, "shown_order": [2, 0, 1], "comment": "ok"},
    {"item_id": "a", "annotator": "ann2", "prompt": "p", "responses": ["z", "x", "y"], "ranking": [3, 1, 2]},
    {"prompt": "q", "chosen": "good", "rejected": "bad", "margin": 2.0},
    {"item_id": 7, "annotator": "ann1", "prompt": "r", "responses": ["u", "v"], "ranking": [1, 1]},
]
BAD = [  # (line, kind)
    ('{"item_id": "b", "prompt": "p", "responses": ["x"], "ranking": [1]}', "missing_responses"),
    ('{"item_id": "c", "prompt": "p"}', "missing_responses"),
    ('{"item_id": "d", "prompt": "p", "responses": ["x", ""], "ranking": [1, 2]}', "missing_responses"),
    ('{"item_id": "e", "prompt": "p", "responses": ["x", "x"], "ranking": [1, 2]}', "duplicate_response"),
    ('{"item_id": "f", "prompt": "p", "responses": ["x", "y"], "ranking": [1, 3]}', "bad_ranking"),
    ('{"item_id": "g", "prompt": "p", "responses": ["x", "y"], "ranking": [2, 2]}', "bad_ranking"),
    ('{"item_id": "h", "prompt": "p", "responses": ["x", "y", "z"], "ranking": [1, 2]}', "bad_ranking"),
    ('{"item_id": "i", "prompt": "p", "responses": ["x", "y"], "ranking": [1, 1.5]}', "bad_ranking"),
    ('{"item_id": "j", "prompt": "p", "responses": ["x", "y"]}', "bad_ranking"),
    ('{"item_id": "k", "prompt": "p", "responses": ["x", "y"], "ranking": [1, 2], "shown_order": [0, 0]}',
     "bad_field"),
    ('{"item_id": "l", "prompt": "p", "responses": ["x", "y"], "ranking": [1, 2], "aspects": {"h": {"5": 1}}}',
     "bad_field"),
    ('{"prompt": "p", "chosen": "x", "rejected": "y", "margin": "big"}', "bad_field"),
    ('{"item_id": "a", "annotator": "ann1", "prompt": "p", "responses": ["x", "y", "z"], "ranking": [1, 2, 3]}',
     "duplicate_label"),
    ('{"item_id": "a", "annotator": "ann3", "prompt": "p", "responses": ["x", "y", "w"], "ranking": [1, 2, 3]}',
     "item_mismatch"),
    ('{"item_id": "m", "responses": ["x", "y"], "ranking": [1, 2]}', "missing_text"),
    ('{"item_id": "n", "prompt": "p", "responses": ["x", "y"], "ranking": [1, 2]', "invalid_json"),
]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    path = tmp_path_factory.mktemp("prefs") / "labels.jsonl.gz"
    lines = [json.dumps(r) for r in GOOD] + [line for line, _ in BAD]
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return path, lines


def test_reader_keeps_good_records_and_quarantines_each_bad_one_with_its_reason(mixed):
    path, lines = mixed
    records, bad = read_preferences(path)
    assert len(records) + bad.height == len(lines)  # nothing lost
    assert [r.item_id for r in records] == ["a", "a", item_id_for("q", ["bad", "good"]), "7"]  # no id: content id
    first = records[0]
    assert first.ranking == (1, 2, 2) and first.shown_order == (2, 0, 1) and first.comment == "ok"
    assert first.aspects == {"helpfulness": {0: 5.0, 1: 3.5}}
    pair = records[2]
    assert pair.responses == ("good", "bad") and pair.ranking == (1, 2) and pair.margin == 2.0
    assert pair.annotator == "anonymous"
    got = {row["line"]: row["kind"] for row in bad.iter_rows(named=True)}
    assert got == {len(GOOD) + 1 + i: kind for i, (_, kind) in enumerate(BAD)}
    for row in bad.iter_rows(named=True):  # the raw line, whole, and an error naming the file and line
        assert row["raw"] == lines[row["line"] - 1].encode()
        assert row["file"] == "labels.jsonl.gz"
    mismatch = bad.filter(bad["kind"] == "duplicate_label")["error"][0]
    assert mismatch.startswith("labels.jsonl.gz:17:") and "line 1" in mismatch


def test_items_and_labels_are_checked_across_the_files_of_a_folder(tmp_path):
    def label(ann, responses, ranking):
        return json.dumps({"item_id": "a", "annotator": ann, "prompt": "p", "responses": responses,
                           "ranking": ranking}) + "\n"
    folder = tmp_path / "prefs"
    folder.mkdir()
    (folder / "a.jsonl").write_text(label("ann1", ["x", "y"], [1, 2]))
    (folder / "b.jsonl").write_text(label("ann2", ["y", "x"], [1, 2]) + label("ann1", ["x", "y"], [2, 1])
                                    + label("ann3", ["x", "z"], [1, 2]))
    records, bad = read_preferences(folder)
    assert [(r.file, r.annotator) for r in records] == [("a.jsonl", "ann1"), ("b.jsonl", "ann2")]
    assert [(f, line, kind) for f, line, kind in bad.select("file", "line", "kind").iter_rows()] == [
        ("b.jsonl", 2, "duplicate_label"), ("b.jsonl", 3, "item_mismatch")]
    assert "in a.jsonl at line 1" in bad["error"][0]
    agg = aggregate(read_preferences(folder)[0])  # one item, two labels (the mismatch no longer breaks it)
    assert agg.consensus["a"].n_labels == 2


def test_records_without_item_id_are_grouped_by_their_content(tmp_path):
    path = tmp_path / "pairs.jsonl"
    rows = [{"prompt": "Q1", "chosen": "A", "rejected": "B"}, {"prompt": "Q1", "chosen": "A", "rejected": "B"},
            {"prompt": "Q2", "chosen": "C", "rejected": "D", "annotator": "x"},
            {"prompt": "Q2", "chosen": "D", "rejected": "C", "annotator": "y"},
            {"prompt": "Q2", "responses": ["D", "C"], "ranking": [1, 2], "annotator": "z"},  # a ranking too
            {"prompt": "Q3", "chosen": "C", "rejected": "D", "item_id": "given"}]  # a given id is kept
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    records, bad = read_preferences(path)
    q2 = item_id_for("Q2", ["C", "D"])
    q1 = item_id_for("Q1", ["A", "B"])
    assert [r.item_id for r in records] == [q1, q1, q2, q2, q2, "given"]  # no annotator: two separate labels
    assert bad.height == 0
    agg = aggregate(records)
    assert list(agg.consensus) == [item_id_for("Q1", ["A", "B"]), q2, "given"]
    c = agg.consensus[q2]
    assert c.n_labels == 3 and c.responses == ("C", "D") and c.ranking == (2, 1)  # two of three prefer D
    assert c.agreement == pytest.approx(1 / 9)  # one item, the opposed labels measured against each other
    tasks, bad = read_tasks(path)  # tasks: the same content id, duplicates within a file caught
    assert [t.item_id for t in tasks] == [item_id_for("Q1", ["A", "B"]), q2, "given"] and bad.height == 3


def test_pairs_without_annotator_are_separate_labels_and_the_majority_wins(tmp_path):
    path = tmp_path / "pairs.jsonl"
    rows = [{"prompt": "Q", "chosen": "A", "rejected": "B"}, {"prompt": "Q", "chosen": "B", "rejected": "A"},
            {"prompt": "Q", "chosen": "B", "rejected": "A"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    records, bad = read_preferences(path)
    assert len(records) == 3 and bad.height == 0  # nothing quarantined as duplicate_label
    agg = aggregate(records)
    (c,) = agg.consensus.values()
    assert c.n_labels == 3 and c.ranking[c.responses.index("B")] == 1  # B>A, two of three
    assert agg.annotators == {}  # no per-annotator profile for unknown annotators
    assert agg.agreement["items_with_agreement"] == 1  # each label a rater of its own
    named = [dict(r, annotator="x") for r in rows]  # a named annotator twice is still a duplicate
    path.write_text("".join(json.dumps(r) + "\n" for r in named))
    records, bad = read_preferences(path)
    assert len(records) == 1 and bad["kind"].to_list() == ["duplicate_label", "duplicate_label"]


def test_consensus_margin_counts_a_margin_only_in_the_direction_it_was_given():
    assert consensus_margin((1, 2), [((1, 2), 3.0), ((1, 2), 1.0), ((1, 2), None)]) == 2.0  # mean of those given
    assert consensus_margin((2, 1), [((1, 2), 5.0), ((2, 1), None), ((2, 1), None)]) is None  # given the other way
    assert consensus_margin((2, 1), [((1, 2), 1.0), ((2, 1), 4.0)]) == 1.5  # (-1 + 4) / 2
    assert consensus_margin((2, 1), [((1, 2), 4.0), ((2, 1), 4.0)]) is None  # cancels: not positive
    assert consensus_margin((1, 2), [((1, 2), None)]) is None  # none given
    assert consensus_margin((1, 1), [((1, 2), 2.0)]) is None  # a tied consensus carries no margin
    assert consensus_margin((1, 2, 3), [((1, 2, 3), 2.0)]) is None  # pairs only


def test_aggregate_margin_follows_the_consensus_order(tmp_path):
    path = tmp_path / "m.jsonl"
    rows = [{"item_id": "p1", "annotator": "x", "prompt": "Q", "chosen": "A", "rejected": "B", "margin": 5},
            {"item_id": "p1", "annotator": "y", "prompt": "Q", "chosen": "B", "rejected": "A"},
            {"item_id": "p1", "annotator": "z", "prompt": "Q", "chosen": "B", "rejected": "A"},
            {"item_id": "p2", "annotator": "x", "prompt": "Q", "chosen": "A", "rejected": "C", "margin": 1},
            {"item_id": "p2", "annotator": "y", "prompt": "Q", "chosen": "C", "rejected": "A", "margin": 2},
            {"item_id": "p2", "annotator": "z", "prompt": "Q", "chosen": "C", "rejected": "A", "margin": 5}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    agg = aggregate(read_preferences(path)[0])
    p1, p2 = agg.consensus["p1"], agg.consensus["p2"]
    assert p1.responses == ("A", "B") and p1.ranking == (2, 1) and p1.margin is None  # x's 5 was for A > B
    assert p2.responses == ("A", "C") and p2.ranking == (2, 1) and p2.margin == pytest.approx(2.0)  # (-1+2+5)/3


def test_tasks_round_trip_through_the_reader(tmp_path):
    tasks = [Task("t1", "prompt", ("a", "b", "c"), ("r1", "r2", "r3"), {"round": 1}), Task("t2", "q", ("x", "y"))]
    path = tmp_path / "tasks.jsonl"
    path.write_text("".join(json.dumps(t.to_json()) + "\n" for t in tasks) + '{"item_id": "t3", "prompt": "p"}\n')
    got, bad = read_tasks(path)
    assert got == tasks
    assert bad["kind"].to_list() == ["missing_responses"]


def test_ranking_json_round_trips(tmp_path):
    p = Preference("i", "p", ("a", "b"), (2, 1), "ann", aspects={"h": {1: 2.0}}, shown_order=(1, 0),
                   comment="c", created_at="2026-01-01T00:00:00Z")
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(ranking_json(p)) + "\n")
    (got,), bad = read_preferences(path)
    assert bad.height == 0
    assert got == Preference("i", "p", ("a", "b"), (2, 1), "ann", aspects={"h": {1: 2.0}}, shown_order=(1, 0),
                             comment="c", created_at="2026-01-01T00:00:00Z", file="r.jsonl", line=1)


def test_is_ranking():
    assert is_ranking([1, 2, 3]) and is_ranking([3, 1, 2]) and is_ranking([1, 2, 2]) and is_ranking([1, 1])
    assert is_ranking([1, 2, 2, 4])  # competition numbering
    assert not is_ranking([1, 3]) and not is_ranking([2, 2]) and not is_ranking([0, 1]) and not is_ranking([])


def test_bradley_terry_two_items_closed_form():
    # the MLE of p_a / p_b is wins_ab / wins_ba
    s = bradley_terry(2, [[0, 3], [1, 0]], prior=0)
    assert s[0] - s[1] == pytest.approx(math.log(3), abs=1e-6)
    assert s.sum() == pytest.approx(0, abs=1e-9)
    # the prior keeps a clean sweep finite: (3 + 0.5) / 0.5
    s = bradley_terry(2, [[0, 3], [0, 0]], prior=0.5)
    assert s[0] - s[1] == pytest.approx(math.log(7), abs=1e-6)


def test_bradley_terry_recovers_planted_strengths():
    rng = random.Random(0)
    true = [1.0, 0.0, -1.0]
    wins = [[0.0] * 3 for _ in range(3)]
    for _ in range(20000):
        i, j = rng.sample(range(3), 2)
        p = 1 / (1 + math.exp(true[j] - true[i]))
        w, loser = (i, j) if rng.random() < p else (j, i)
        wins[w][loser] += 1
    s = bradley_terry(3, wins, prior=0)
    assert list(s) == pytest.approx(true, abs=0.05)


def test_wins_matrix_counts_ties_half():
    w = wins_matrix([(1, 2, 2)], 3)
    assert w.tolist() == [[0, 1, 1], [0, 0, 0.5], [0, 0.5, 0]]


def test_kendalls_w_closed_form():
    assert kendalls_w([[1, 2, 3], [1, 2, 3], [1, 2, 3]]) == pytest.approx(1)
    assert kendalls_w([[1, 2, 3], [3, 2, 1]]) == pytest.approx(0)
    # totals (4, 6, 8): S = 8, W = 12 S / (m^2 (n^3 - n)) = 96 / 216
    assert kendalls_w([[1, 2, 3], [1, 3, 2], [2, 1, 3]]) == pytest.approx(96 / 216)
    # ties: ranks (1, 2.5, 2.5) and (1, 2, 3): totals (2, 4.5, 5.5), S = 6.5, T = 6, W = 78 / (4 * 24 - 2 * 6)
    assert kendalls_w([[1, 2, 2], [1, 2, 3]]) == pytest.approx(78 / 84)
    assert kendalls_w([[1, 2]]) is None and kendalls_w([[1, 1], [1, 1]]) is None


def test_krippendorff_alpha_closed_form():
    assert krippendorff_alpha([[1, 1], [2, 2], [3, 3]]) == pytest.approx(1)
    # values 1,1 | 2,3: D_o = (0 + 2) / 4, D_e = 22 / 12
    assert krippendorff_alpha([[1, 1], [2, 3], [5]]) == pytest.approx(1 - 0.5 / (22 / 12))
    assert krippendorff_alpha([[1], [2]]) is None


def test_spearman_and_kendall_distance():
    assert spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1)
    assert spearman([1, 1, 1], [1, 2, 3]) is None
    assert kendall_distance([1, 2, 3], [1, 2, 3]) == 0
    assert kendall_distance([1, 2, 3], [3, 2, 1]) == 1
    assert kendall_distance([1, 2], [1, 1]) == 0.5


HONEST = ("h1", "h2", "h3", "h4", "h5")


def _panel(n_items: int = 30, seed: int = 0) -> list[Preference]:
    """Five honest annotators who rank by a hidden quality with a little noise, one who always ranks the
    response shown first best, one who ranks in reverse; responses are long in proportion to quality."""
    rng = random.Random(seed)
    out = []
    for item in range(n_items):
        quality = [rng.random() for _ in range(4)]
        responses = tuple(f"r{item}-{i}" + "x" * rng.randint(0, 30) for i in range(4))
        truth = tuple(1 + sum(q > v for q in quality) for v in quality)
        for name in HONEST:
            noisy = [q + rng.gauss(0, 0.05) for q in quality]
            rank = tuple(1 + sum(q > v for q in noisy) for v in noisy)
            out.append(Preference(f"i{item}", "p", responses, rank, name, shown_order=tuple(rng.sample(range(4), 4))))
        shown = tuple(rng.sample(range(4), 4))
        first = [0] * 4
        for pos, idx in enumerate(shown):
            first[idx] = pos + 1
        out.append(Preference(f"i{item}", "p", responses, tuple(first), "clicker", shown_order=shown))
        out.append(Preference(f"i{item}", "p", responses, tuple(5 - r for r in truth), "contrarian"))
    return out


@pytest.fixture(scope="module")
def panel_agg():
    return aggregate(_panel())


def test_aggregate_consensus_follows_the_honest_majority(panel_agg):
    honest = {}
    for p in _panel():
        if p.annotator == "h1":
            honest[p.item_id] = p.ranking
    agree = sum(kendall_distance(c.ranking, honest[k]) <= 1 / 6 for k, c in panel_agg.consensus.items())
    assert agree >= 0.8 * len(honest)


def test_aggregate_flags_the_biased_annotators(panel_agg):
    a = panel_agg.annotators
    assert "position_bias" in a["clicker"].flags and a["clicker"].position_bias > 0.9
    assert "far_from_consensus" in a["contrarian"].flags
    for name in ("h1", "h2", "h3"):
        assert a[name].flags == [] and a[name].distance_from_consensus < 0.3, a[name]
    assert a["h1"].n_labels == 30


def test_aggregate_length_bias_is_relative_to_the_consensus():
    rng = random.Random(1)
    labels = []
    for item in range(12):
        responses = tuple("y" * rng.randint(1, 40) + str(i) for i in range(3))
        truth = tuple(rng.sample([1, 2, 3], 3))
        by_len = [len(r) for r in responses]
        longest = tuple(1 + sum(x > v for x in by_len) for v in by_len)
        labels += [Preference(f"i{item}", "p", responses, truth, n) for n in ("a", "b", "c")]
        labels.append(Preference(f"i{item}", "p", responses, longest, "verbose"))
    agg = aggregate(labels)
    assert "length_bias" in agg.annotators["verbose"].flags
    assert "length_bias" not in agg.annotators["a"].flags


def test_aggregate_excludes_low_agreement_items():
    labels = [Preference("agree", "p", ("a", "b", "c"), (1, 2, 3), n) for n in ("x", "y")]
    labels += [Preference("split", "p", ("a", "b", "c"), r, n) for r, n in (((1, 2, 3), "x"), ((3, 2, 1), "y"))]
    labels += [Preference("alone", "p", ("a", "b"), (2, 1), "x")]
    agg = aggregate(labels, min_agreement=0.5)
    assert agg.excluded_items == ["split"]
    assert [c.item_id for c in agg.kept()] == ["agree", "alone"]
    assert agg.consensus["alone"].ranking == (2, 1) and agg.consensus["alone"].agreement is None
    assert agg.agreement["kendalls_w"] == pytest.approx(0.5)  # mean of 1 and 0
    assert aggregate(labels).excluded_items == []


def test_aggregate_aligns_labels_that_list_responses_in_another_order():
    labels = [Preference("i", "p", ("a", "b", "c"), (1, 2, 3), "x", aspects={"h": {0: 1.0}}, shown_order=(2, 1, 0)),
              Preference("i", "p", ("c", "a", "b"), (3, 1, 2), "y", aspects={"h": {1: 3.0}}, shown_order=(0, 2, 1))]
    c = aggregate(labels).consensus["i"]
    assert c.responses == ("a", "b", "c") and c.ranking == (1, 2, 3) and c.agreement == pytest.approx(1)
    assert c.aspects == {"h": [2.0, None, None]}


def test_aggregate_to_dict_is_json_and_the_report_escapes(tmp_path, panel_agg):
    d = json.loads(json.dumps(panel_agg.to_dict()))
    assert set(d) >= {"consensus", "agreement", "annotators", "excluded_items"}
    assert d["annotators"]["clicker"]["flags"] == ["position_bias", "far_from_consensus"]
    labels = [Preference("i", "<b>p</b>", ("a", "b"), (1, 2), "<script>x</script>")]
    body = preference_report_html(aggregate(labels))
    assert "<script>x" not in body and "&lt;script&gt;x" in body
    out = tmp_path / "prefs.html"
    write_preference_report(panel_agg, out)
    html = out.read_text()
    assert html.startswith("<!doctype html>") and "contrarian" in html and "far_from_consensus" in html


def test_the_readers_derived_id_is_the_one_shared_function(tmp_path):
    from corpus.readers import InputSpec, plan_tasks, read_task
    from corpus.readers.base import derived_id

    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "Q", "chosen": "A", "rejected": "B"}) + "\n"
                    + json.dumps({"prompt": "Q", "chosen": "A", "rejected": "B", "item_id": "p:p.jsonl:9"}) + "\n")
    spec = InputSpec(source="p", path=str(path), format="jsonl", text_key="prompt", id_key="item_id")
    (task,) = plan_tasks([spec])
    ids = [i for chunk in read_task(task) for i in chunk.docs["id"]]
    assert ids == [derived_id("p", "p.jsonl", 1), "p:p.jsonl:9"]  # the reader's id for a record without one
    records, _ = read_preferences(path)  # the derived id is recognised (content id); a given id is kept
    assert [r.item_id for r in records] == [item_id_for("Q", ["A", "B"]), "p:p.jsonl:9"]
