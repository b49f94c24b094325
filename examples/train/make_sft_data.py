"""Write examples/train/sft_data.jsonl: ~100 small synthetic chat records (seeded, no network).

Three kinds, so every SFT path is exercised: single-turn `messages` records, multi-turn `messages`
records (a follow-up question about the previous answer), and prompt/response records (some with a
system field). The tasks are trivial on purpose (small sums, reversing words, counting letters):
a tiny model can learn them, and the answers are checkable.

    .venv/bin/python examples/train/make_sft_data.py [OUT]
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

WORDS = ["river", "stone", "cloud", "bread", "apple", "train", "music", "garden", "window", "lamp"]
SYSTEMS = ["You are a helpful assistant.", "Answer briefly and exactly.", ""]


def sum_turn(rng: random.Random) -> tuple[str, str, int]:
    a, b = rng.randint(0, 20), rng.randint(0, 20)
    return f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}.", a + b


def records(n: int = 100, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    out: list[dict] = []
    for i in range(n):
        kind = i % 4
        system = rng.choice(SYSTEMS)
        if kind == 0:  # single turn, messages
            q, a, _ = sum_turn(rng)
            msgs = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        elif kind == 1:  # multi-turn: a follow-up on the previous answer
            q, a, total = sum_turn(rng)
            k = rng.randint(2, 3)
            times = {2: "two", 3: "three"}[k]
            msgs = [{"role": "user", "content": q}, {"role": "assistant", "content": a},
                    {"role": "user", "content": f"And that times {times}?"},
                    {"role": "assistant", "content": f"{total} times {times} is {total * k}."}]
            if rng.random() < 0.5:
                w = rng.choice(WORDS)
                msgs += [{"role": "user", "content": f"Now spell '{w}' backwards."},
                         {"role": "assistant", "content": f"'{w}' backwards is '{w[::-1]}'."}]
        elif kind == 2:  # prompt/response pairs
            w = rng.choice(WORDS)
            rec = {"prompt": f"Spell '{w}' backwards.", "response": f"'{w}' backwards is '{w[::-1]}'."}
            if system:
                rec["system"] = system
            out.append(rec)
            continue
        else:
            w = rng.choice(WORDS)
            c = rng.choice(sorted(set(w)))
            msgs = [{"role": "user", "content": f"How many times does '{c}' appear in '{w}'?"},
                    {"role": "assistant", "content": f"'{c}' appears {w.count(c)} time{'s' * (w.count(c) != 1)} "
                                                     f"in '{w}'."}]
        if system:
            msgs.insert(0, {"role": "system", "content": system})
        out.append({"messages": msgs})
    return out


def main(argv: list[str]) -> None:
    out = Path(argv[0]) if argv else Path(__file__).with_name("sft_data.jsonl")
    out.write_text("".join(json.dumps(r) + "\n" for r in records()))
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
