"""Every snippet of README.md runs (issue 14, items 3 and 5).

Each fenced block is preceded by a marker in the README's source saying how it is tested:
``<!-- readme-test: commands -->`` (its lines run in order, on a copy of examples/),
``<!-- readme-test: script -->`` (saved as a script and run), or ``<!-- readme-test: not run: WHY -->``.
A block without a marker fails here, so none is skipped silently.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from helpers import ROOT

README = (ROOT / "README.md").read_text()
MARKER = re.compile(r"<!-- readme-test: (commands|script|not run: (?P<why>.+?)) -->")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
# Without the train extra: the data toolkit must not need these.
TRAIN_MODULES = ("torch", "transformers", "peft", "safetensors", "tensorboard")


def _blocks() -> list[tuple[str, str, str]]:
    """(marker, language, body) of every fenced block; marker '' when the block has none."""
    out = []
    for m in FENCE.finditer(README):
        before = README[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        mark = MARKER.fullmatch(before.strip())
        out.append((mark.group(1) if mark else "", m.group(1), m.group(2)))
    return out


def _commands() -> list[str]:
    lines = []
    for mark, _, body in _blocks():
        if mark == "commands":
            for line in body.splitlines():
                line = re.sub(r"\s+#.*$", "", line).strip()
                if line and not line.startswith("#"):
                    lines.append(line)
    return lines


def test_every_readme_block_says_how_it_is_tested():
    blocks = _blocks()
    assert blocks and [m for m, _, _ in blocks].count("script") == 1
    unmarked = [body.splitlines()[0] for mark, _, body in blocks if not mark]
    assert not unmarked, f"README blocks without a readme-test marker: {unmarked}"
    for mark, _, body in blocks:  # a block that is not run still has to name real extras
        if mark.startswith("not run"):
            extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
            for name in re.findall(r"corpusforge\[(\w+)\]", body):
                assert name in extras, f"README installs an extra {name!r} that pyproject.toml lacks"
    assert "download.pytorch.org/whl/cpu" in README  # the CPU wheel index, for machines without a GPU


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A copy of examples/ to run the README's commands in (they write ./out/...)."""
    root = tmp_path_factory.mktemp("readme")
    shutil.copytree(ROOT / "examples", root / "examples")
    return root


def _run(line: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    argv = shlex.split(line)
    assert argv[0] == "corpus", line
    return subprocess.run([sys.executable, "-m", "corpus", *argv[1:]], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "COLUMNS": "160"})


@pytest.fixture(scope="module")
def data_commands(workspace) -> list[tuple[str, subprocess.CompletedProcess]]:
    """The data lines of the Use block (everything before `corpus train`), in order."""
    done = []
    for line in _commands():
        if line.startswith("corpus train"):
            break
        done.append((line, _run(line, workspace)))
    return done


@pytest.mark.slow  # the quickstart pipeline and the tokenizer: about 40 s of CPU on 2 cores
def test_readme_data_commands_run_in_order(data_commands, workspace):
    assert len(data_commands) >= 15
    for line, res in data_commands:
        assert res.returncode == 0, f"{line}\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}"
        assert "Traceback" not in res.stderr, line
    out = workspace / "out"
    for made in ("quickstart/manifest.json", "quickstart/report.html", "jsonl", "fix", "tokenizer/tokenizer.json",
                 "tokens/train.bin", "tokens/validation.idx"):
        assert (out / made).exists(), made


def _shorten_training(examples: Path) -> None:
    """The copy's training configs cut to a few steps: the commands run as written, on a tiny budget
    (the examples' own length is the training plugins' concern, not this test's)."""
    for name, changes in (("pretrain.yaml", {"max_steps": 4, "eval_every": 2, "warmup_steps": 1}),
                          ("sft.yaml", {"epochs": 1, "eval_every": 2, "warmup_steps": 1})):
        path = examples / "train" / name
        cfg = yaml.safe_load(path.read_text())
        cfg["train"].update(changes)
        path.write_text(yaml.safe_dump(cfg))
    sweep = examples / "train" / "sweep.yaml"
    cfg = yaml.safe_load(sweep.read_text())
    cfg["space"]["train.epochs"] = [1]
    sweep.write_text(yaml.safe_dump(cfg))


@pytest.mark.slow  # pretrain, sft and a sweep of two trials, each a few steps: about a minute of CPU
@pytest.mark.timeout(900)
def test_readme_training_commands_run_after_the_data_commands(data_commands, workspace):
    _shorten_training(workspace / "examples")
    lines = [ln for ln in _commands() if ln.startswith("corpus train")]
    assert [ln.split()[2] for ln in lines] == ["pretrain", "sft", "sweep"]
    for line in lines:
        res = _run(line, workspace, timeout=900)
        assert res.returncode == 0, f"{line}\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}"
    assert (workspace / "out" / "pretrain" / "final" / "model.safetensors").exists()
    assert (workspace / "out" / "sft" / "final").is_dir()
    assert (workspace / "out" / "sweep" / "best.yaml").exists()


def test_readme_python_snippet_runs_as_a_script_with_two_workers(workspace):
    (body,) = [b for mark, lang, b in _blocks() if mark == "script" and lang == "python"]
    assert "workers=2" in body
    script = workspace / "snippet.py"
    script.write_text(body)
    res = subprocess.run([sys.executable, str(script)], cwd=workspace, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "'source': 'web'" in res.stdout and "'ok': True" in res.stdout
    assert (workspace / "out" / "web" / "manifest.json").exists()


def _without_training(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    block = "; ".join(f"sys.modules[{m!r}] = None" for m in TRAIN_MODULES)
    code = f"import sys; {block}; from corpus.cli import main; sys.exit(main({list(args)!r}))"
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=240)


def test_the_data_toolkit_runs_without_the_train_extra(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_text("".join(f'{{"text": "doc {i} of rivers"}}\n' for i in range(20)))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"output: {tmp_path / 'out'}\nworkers: 1\ninputs:\n  - source: a\n    path: {tmp_path / 'in'}\n"
                   "pipeline:\n  - op: exact_dedup\n")
    for args in (("check", str(cfg)), ("run", str(cfg), "-q"), ("ops",), ("verify", str(tmp_path / "out"))):
        res = _without_training(*args, cwd=tmp_path)
        assert res.returncode == 0, f"{args}: {res.stderr[-2000:]}"
    res = _without_training("train", "pretrain", str(ROOT / "examples" / "train" / "pretrain.yaml"), cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert " ".join(res.stderr.split()) == (
        "error: this needs torch, from the 'train' extra, which this install lacks: pip install 'corpusforge[train]' "
        "(a machine without a GPU: add --extra-index-url https://download.pytorch.org/whl/cpu)")
