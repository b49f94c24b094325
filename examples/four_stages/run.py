"""The four stages of corpusforge end to end, in one command, on the bundled data:

    .venv/bin/python examples/four_stages/run.py            # about 5 minutes on two CPU cores
    .venv/bin/python examples/four_stages/run.py --quick    # a few steps per stage (a smoke test)
    .venv/bin/python examples/four_stages/run.py --out DIR  # elsewhere than out/four_stages

1. preparation: `corpus run examples/quickstart.yaml` into OUT/corpus (report.html), a
   tokenizer and token shards;
2. pretraining a tiny Llama (pretrain.yaml);
3. SFT on the bundled chat data (sft.yaml);
4. a reward model on three annotators' rankings (reward.yaml, preferences.html), then PPO (ppo.yaml).

Each stage is the same `corpus` command a user would type, and each resumes when rerun; the stages'
reports are listed at the end.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def stages(out: Path, quick: bool) -> list[tuple[str, list[str]]]:
    steps = ["--max-steps", "3"] if quick else []

    def train(name: str, **paths: Path) -> list[str]:  # the config's own paths, moved under out
        sets = [f"--set={k.replace('__', '.')}={v}" for k, v in paths.items()]
        return ["train", name, str(HERE / f"{name}.yaml"), "-o", str(out / name), *sets, *steps]

    return [
        ("prepare", ["run", str(ROOT / "examples" / "quickstart.yaml"), "-o", str(out / "corpus"), "-q"]),
        ("tokenizer", ["tokenizer", "train", str(out / "corpus"), "--out", str(out / "tokenizer"),
                       "--vocab-size", "4000"]),
        ("tokenize", ["tokenize", str(out / "corpus"), "--tokenizer", str(out / "tokenizer"), "--out",
                      str(out / "tokens")]),
        ("pretrain", train("pretrain", data__train=out / "tokens", data__tokenizer=out / "tokenizer")),
        ("sft", train("sft", model__from_pretrained=out / "pretrain" / "final")),
        ("reward", train("reward", model__from_pretrained=out / "sft" / "final")),
        ("ppo", train("ppo", model__from_pretrained=out / "sft" / "final", ppo__reward_model=out / "reward" / "final")),
    ]


REPORTS = ["corpus/report.html", "pretrain/report.md", "sft/report.md", "reward/report.md",
           "reward/preferences.html", "ppo/report.md", "ppo/final"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few optimizer steps per training stage")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "four_stages", help="where the stages write")
    args = ap.parse_args(argv)
    out = args.out.resolve()
    if not (HERE / "rankings.jsonl").is_file():
        subprocess.run([sys.executable, str(HERE / "make_rankings.py")], check=True)
    t0 = time.perf_counter()
    for name, cmd in stages(out, args.quick):
        t = time.perf_counter()
        print(f"== {name}: corpus {' '.join(cmd)}", flush=True)
        res = subprocess.run([sys.executable, "-m", "corpus", *cmd], cwd=ROOT)
        if res.returncode != 0:
            print(f"error: stage {name} failed (exit {res.returncode}); rerun to resume", file=sys.stderr)
            return res.returncode
        print(f"== {name}: done in {time.perf_counter() - t:.0f} s", flush=True)
    print(f"four stages done in {time.perf_counter() - t0:.0f} s; reports:")
    for rel in REPORTS:
        print(f"  {out / rel}{'' if (out / rel).exists() else '  (missing)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
