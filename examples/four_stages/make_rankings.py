"""Write rankings.jsonl and prompts.jsonl for the four-stage example (seeded, no network).

Each item is a small sum ("What is 3 plus 4?") with three responses: the right answer, an answer off by
one, and a non-answer. Three annotators rank every item: `ana` and `ben` by correctness (ben now and
then swaps the two wrong ones, a tie on a few), `cyd` always ranks the response shown first best (a
position bias the preference report flags). Two records are broken on purpose (a ranking that is not
a ranking, a response given twice): the reader quarantines them with their reason.

    .venv/bin/python examples/four_stages/make_rankings.py [OUTDIR]
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path


def items(n: int, rng: random.Random) -> list[tuple[str, list[str]]]:
    out = []
    for _ in range(n):
        a, b = rng.randint(0, 20), rng.randint(0, 20)
        wrong = a + b + rng.choice([-1, 1])
        out.append((f"What is {a} plus {b}?", [f"{a} plus {b} is {a + b}.", f"{a} plus {b} is {wrong}.",
                                              "I am not sure."]))
    return out


def labels(n: int = 120, seed: int = 18) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i, (prompt, responses) in enumerate(items(n, rng)):
        order = rng.sample(range(3), 3)  # responses in a random order per item
        resp = [responses[k] for k in order]
        truth = [order.index(k) for k in range(3)]  # index of the right, the off-by-one, the non-answer
        for name in ("ana", "ben", "cyd"):
            rank = [0, 0, 0]
            for level, idx in enumerate(truth):
                rank[idx] = level + 1
            if name == "ben" and rng.random() < 0.15:
                rank[truth[1]], rank[truth[2]] = rank[truth[2]], rank[truth[1]]
            if name == "ben" and rng.random() < 0.1:
                rank[truth[1]] = rank[truth[2]] = 2  # a tie
            seen = rng.sample(range(3), 3)
            if name == "cyd":
                rank = [seen.index(k) + 1 for k in range(3)]
            out.append({"item_id": f"sum-{i:03d}", "annotator": name, "prompt": prompt, "responses": resp,
                        "ranking": rank, "shown_order": seen})
    return out


def main(outdir: Path) -> None:
    recs = labels()
    lines = [json.dumps(r) for r in recs]
    lines.insert(40, json.dumps({"item_id": "broken-1", "annotator": "ana", "prompt": "What is 1 plus 1?",
                                 "responses": ["1 plus 1 is 2.", "1 plus 1 is 3."], "ranking": [1, 3]}))
    lines.insert(90, json.dumps({"item_id": "broken-2", "annotator": "ben", "prompt": "What is 2 plus 2?",
                                 "responses": ["2 plus 2 is 4.", "2 plus 2 is 4."], "ranking": [1, 2]}))
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "rankings.jsonl").write_text("\n".join(lines) + "\n")
    rng = random.Random(19)
    prompts = [{"prompt": p} for p, _ in items(200, rng)]
    (outdir / "prompts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in prompts))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent)
