"""SFT: target masks from token spans (known answers), truncation, packing, mixtures, few-shot, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from trainkit import QUIET, TINY_MODEL, read_metrics, shards  # noqa: F401 (fixture)
from transformers import PreTrainedTokenizerFast

from corpus import plugins
from corpus.plugins.base import parse_config
from corpus.plugins.data import IGNORE_INDEX as IGNORE
from corpus.plugins.data import PackedExamples
from corpus.plugins.sft import (
    ChatEncoder,
    ChatTemplateError,
    SFTConfig,
    SFTDataError,
    SFTDataset,
    mixture,
    to_messages,
    truncate,
    with_few_shot,
)
from corpus.plugins.tasks import SFT
from corpus.plugins.trainer import EmptyTargetsError, check_targets
from corpus.stages.tokenizer import CHAT_TEMPLATE, SPECIAL_TOKENS

# ids: 0 <|endoftext|> 1 <|pad|> 2 <|system|> 3 <|user|> 4 <|assistant|> 5 <|end|>, then the words
WORDS = "hi hello there bye be nice ok two plus is four".split()
ID = {w: i for i, w in enumerate(list(SPECIAL_TOKENS) + WORDS)}
SYS, USR, AST, END = ID["<|system|>"], ID["<|user|>"], ID["<|assistant|>"], ID["<|end|>"]


@pytest.fixture(scope="module")
def wordtok() -> PreTrainedTokenizerFast:
    """A word-level tokenizer, so every expected id below can be written by hand."""
    tok = Tokenizer(models.WordLevel(ID, unk_token="<|pad|>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    t = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|pad|>")
    t.chat_template = CHAT_TEMPLATE
    return t


def m(role: str, content: str, train: bool = True) -> dict:
    return {"role": role, "content": content, "train": train}


def test_single_turn_mask_known_answer(wordtok):
    ids, mask = ChatEncoder(wordtok).encode([m("system", "be nice"), m("user", "hi"), m("assistant", "hello there")])
    assert ids.tolist() == [SYS, ID["be"], ID["nice"], END, USR, ID["hi"], END, AST, ID["hello"], ID["there"], END]
    assert mask.tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1]  # the reply and its end marker; no system/prompt
    row = PackedExamples([(ids, mask)], 16, pad_id=1)[0]
    # the first reply token is a target: its label sits on the <|assistant|> marker
    assert row["labels"][:11].tolist() == [IGNORE] * 7 + [ID["hello"], ID["there"], END, IGNORE]


def test_multi_turn_and_last_only(wordtok):
    conv = [m("user", "hi"), m("assistant", "hello"), m("user", "two plus two"), m("assistant", "four")]
    ids, mask = ChatEncoder(wordtok).encode(conv)
    assert ids.tolist() == [USR, ID["hi"], END, AST, ID["hello"], END, USR, ID["two"], ID["plus"], ID["two"], END,
                            AST, ID["four"], END]
    assert mask.tolist() == [0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1]
    _, last = ChatEncoder(wordtok, train_on="last").encode(conv)
    assert last.tolist() == [0] * 12 + [1, 1]
    _, everything = ChatEncoder(wordtok, train_on="all").encode(conv)
    assert everything.all()


def test_truncation(wordtok):
    ids, mask = ChatEncoder(wordtok).encode([m("user", "hi"), m("assistant", "hello there bye")])
    assert mask.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    cut = truncate(ids, mask, 6, "right")
    assert cut is not None and cut[0].tolist() == ids[:6].tolist() and cut[1].tolist() == [0, 0, 0, 0, 1, 1]
    assert truncate(ids, mask, 4, "right") is None  # only the prompt is left: nothing to learn, dropped
    assert truncate(ids, mask, 6, "drop") is None
    assert truncate(ids, mask, 8, "drop") is not None


def test_template_that_is_not_prefix_stable_is_an_error(wordtok):
    # The generation prompt differs from how a finished reply is rendered.
    bad = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
           "{% if add_generation_prompt %}<|user|>{% endif %}")
    with pytest.raises(ChatTemplateError, match="not prefix-stable at message 1"):
        ChatEncoder(wordtok, template=bad).encode([m("user", "hi"), m("assistant", "ok")])


def test_empty_mask_batch_raises():
    rows = PackedExamples([(np.array([3, 6, 5, 4, 7]), np.zeros(5, dtype=np.uint8))], 8, pad_id=1)
    batch = {k: v[None] for k, v in rows[0].items()}
    with pytest.raises(EmptyTargetsError, match="step 1: every label .* assistant mask is empty"):
        check_targets(SFT(torch.nn.Linear(1, 1), rows), batch, "step 1")


def test_records_field_mapping_and_few_shot(wordtok):
    share = SFTDataset(path="x", role_map={"human": "user", "gpt": "assistant"}, messages_key="conversations",
                       role_key="from", content_key="value")
    msgs = to_messages({"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]},
                       share, system_prompt="be nice")
    assert [(x["role"], x["content"]) for x in msgs] == [("system", "be nice"), ("user", "hi"), ("assistant", "hello")]
    alpaca = SFTDataset(path="x", prompt_template="{instruction} {input}", response_key="output")
    msgs = to_messages({"instruction": "two plus", "input": "two", "output": "four"}, alpaca)
    assert [x["content"] for x in msgs] == ["two plus two", "four"]
    with pytest.raises(SFTDataError, match="role 'bot' is not one of"):
        to_messages({"messages": [{"role": "bot", "content": "x"}]}, SFTDataset(path="x"))
    opening = {"messages": [{"role": "assistant", "content": "hello"}, {"role": "user", "content": "hi"}]}
    with pytest.raises(SFTDataError, match="opens with an assistant message"):  # was the template's own error
        to_messages(opening, SFTDataset(path="x"))
    assert to_messages(opening, SFTDataset(path="x"), system_prompt="be nice")[0]["role"] == "system"
    for bad, why in (({"content": None}, r"'content' is null, expected a string"),  # was the text "None"
                     ({"content": {"type": "text"}}, r"'content' is \{\"type\": \"text\"\}, expected a string"),
                     ({"content": 4}, "'content' is 4, expected a string"),
                     ({"content": [{"type": "text", "text": "yo"}]},  # OpenAI-style parts: refused, with a hint
                      r"'content' is \[\{.*expected a string; a list of parts .* join the parts' text into one string"),
                     ({"content": "yo", "train": "false"}, r"'train' is \"false\", expected true or false"),
                     ({"content": "yo", "train": 0}, "'train' is 0, expected true or false")):
        with pytest.raises(SFTDataError, match=f"message 1: {why}"):
            to_messages({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", **bad}]},
                        SFTDataset(path="x"))
    kept = to_messages({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo",
                                                                         "train": False}]}, SFTDataset(path="x"))
    assert kept[1] == {"role": "assistant", "content": "yo", "train": False}

    shots = [[m("user", "hi"), m("assistant", "hello")]]
    conv = with_few_shot([m("system", "be nice"), m("user", "two plus two"), m("assistant", "four")], shots)
    assert [x["role"] for x in conv] == ["system", "user", "assistant", "user", "assistant"]
    ids, mask = ChatEncoder(wordtok).encode(conv)
    assert ids[mask == 1].tolist() == [ID["four"], END]  # the exemplar's reply is context, not a target


def test_packing_keeps_examples_whole_and_separate():
    rng = np.random.default_rng(0)
    ex = [(rng.integers(6, 40, size=n), (rng.random(n) < 0.5).astype(np.uint8)) for n in (5, 9, 3, 12, 7, 4)]
    rows = PackedExamples(ex, 16, pad_id=1)
    seen = sorted(i for b in rows.bins for i in b)
    assert seen == list(range(6)) and all(sum(len(ex[i][0]) for i in b) <= 16 for b in rows.bins)
    for r in range(len(rows)):
        row = {k: v.numpy() for k, v in rows[r].items()}
        for j, e in enumerate(rows.bins[r]):
            ids, mask = ex[e]
            sel = row["document_ids"] == j
            assert row["input_ids"][sel].tolist() == ids.tolist()
            assert row["position_ids"][sel].tolist() == list(range(len(ids)))
            expect = np.where(mask[1:] > 0, ids[1:], IGNORE).tolist() + [IGNORE]
            assert row["labels"][sel].tolist() == expect  # no label reaches into the next example


def test_pretokenized_shards_with_a_loss_mask(tmp_path: Path):
    from corpus.plugins.sft import _shard_examples
    from corpus.shards import write_documents

    write_documents(tmp_path / "chat", [[3, 6, 5, 4, 7, 5], [3, 8, 5, 4, 9, 5]], 20,
                    masks=[[0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 1, 1]])
    ex = _shard_examples(tmp_path / "chat")
    assert [(i.tolist(), m.tolist()) for i, m in ex][1] == ([3, 8, 5, 4, 9, 5], [0, 0, 0, 0, 1, 1])
    write_documents(tmp_path / "plain", [[3, 6, 5]], 20)
    with pytest.raises(SFTDataError, match="need a loss mask"):
        _shard_examples(tmp_path / "plain")


def test_mixture_follows_weights():
    picks = mixture([50, 10, 0], [3.0, 1.0, 5.0], 400, seed=0)
    counts = np.bincount([d for d, _ in picks], minlength=3)
    assert counts.tolist() == [300, 100, 0]  # an empty dataset gets nothing whatever its weight
    firsts = [i for d, i in picks if d == 1][:10]
    assert sorted(firsts) == list(range(10))  # a full pass before any repeat


def _records(path: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    with open(path, "w") as fh:
        for i in range(n):
            a, b = int(rng.integers(0, 9)), int(rng.integers(0, 9))
            if i % 3:
                rec = {"messages": [{"role": "user", "content": f"what is {a} plus {b}?"},
                                    {"role": "assistant", "content": f"{a} plus {b} is {a + b}."}]}
            else:
                rec = {"prompt": f"say {a}", "response": f"{a}."}
            fh.write(json.dumps(rec) + "\n")
    return path


def _sft_config(tmp_path: Path, pretrained: Path, **over) -> SFTConfig:
    data = {"output": str(tmp_path / "sft"), "model": {"from_pretrained": str(pretrained)},
            "data": {"datasets": [{"path": str(_records(tmp_path / "a.jsonl", 60)), "weight": 2.0},
                                  {"path": str(_records(tmp_path / "b.jsonl", 30)), "few_shot": 1}],
                     "seq_len": 96, "validation_fraction": 0.2},
            "train": {"lr": 3e-3, "max_steps": 10, "batch_size": 4, "eval_every": 5, "log_every": 1, **QUIET},
            "samples": {"count": 0}}
    for k, v in over.items():
        data[k] = {**data.get(k, {}), **v} if isinstance(v, dict) else v
    return parse_config(SFTConfig, data, source="test")


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, shards) -> Path:  # noqa: F811
    """A tiny causal LM pretrained for a few steps: SFT starts from its HF folder (transfer)."""
    from trainkit import pretrain_config

    _, tokens = shards
    out = tmp_path_factory.mktemp("pre")
    cfg = pretrain_config(out, tokens, data={"seq_len": 96}, train={"max_steps": 4, "eval_every": 0})
    return plugins.run("pretrain", cfg).final_dir


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")  # peft vs transformers 5
@pytest.mark.parametrize("lora", [False, True])
def test_sft_end_to_end_from_pretrained(tmp_path: Path, pretrained: Path, lora: bool):
    from transformers import AutoModelForCausalLM

    cfg = _sft_config(tmp_path, pretrained, lora={"enabled": lora, "r": 4},
                      train={"lr": 3e-2 if lora else 3e-3})
    result = plugins.run("sft", cfg)
    losses = [r["loss"] for r in read_metrics(tmp_path / "sft")]
    evals = [r["val_loss"] for r in read_metrics(tmp_path / "sft", "eval")]
    assert evals[-1] < evals[0] - 0.05, evals
    if not lora:  # LoRA leaves the (barely pretrained) embeddings frozen: its training loss moves slowly
        assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.3, losses
    stats = result.extra["data"]
    assert [d["train"] for d in stats["datasets"]] == [48, 24] and stats["mixture"] == {"a": 48, "b": 24}
    model = AutoModelForCausalLM.from_pretrained(result.final_dir)  # merged when trained with LoRA
    assert not any("lora" in k for k in model.state_dict())
    assert (result.final_dir / "adapter" / "adapter_config.json").is_file() == lora
    if lora:  # the export is base + merged adapters: the same function as base with the adapter on top
        from peft import PeftModel

        ids = torch.tensor([[3, 40, 41, 5, 4]])
        with torch.no_grad():
            plain = AutoModelForCausalLM.from_pretrained(pretrained)(ids).logits
            with_adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(pretrained),
                                                     result.final_dir / "adapter")(ids).logits
            merged = model(ids).logits
        torch.testing.assert_close(with_adapter, merged, atol=1e-4, rtol=1e-4)
        assert (plain - merged).abs().max() > 1e-3  # and the adapters did learn something


def test_sft_data_errors_name_the_line(tmp_path: Path, pretrained: Path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n'
                   '{"prompt": "no response"}\n')
    cfg = _sft_config(tmp_path, pretrained, data={"datasets": [{"path": str(bad)}]})
    with pytest.raises(SFTDataError, match=r"bad.jsonl:2: needs string fields 'prompt' and 'response'"):
        plugins.run("sft", cfg)
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n'
                   '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": null}]}\n')
    with pytest.raises(SFTDataError, match=r"bad.jsonl:2: message 1: 'content' is null, expected a string"):
        plugins.run("sft", cfg)  # was trained on as the text "None"


def test_a_tokenizer_other_than_the_models_own_is_refused(tmp_path: Path, pretrained: Path, shards):  # noqa: F811
    """A model trained with one tokenizer was fine-tuned (and shipped) with another: every id then names
    another token. Its own tokenizer sits beside it in final/; the same one, or one extending it, is fine."""
    from trainkit import make_shards, make_tokenizer, pretrain_config

    from corpus.plugins.base import PluginInputError

    tok, _ = shards
    other = make_tokenizer(tmp_path / "other", vocab_size=300)
    says = r"the tokenizer .*other \(300 tokens\) is not the one the model .*final was trained with \(320 tokens"
    with pytest.raises(PluginInputError, match=says):
        plugins.run("sft", _sft_config(tmp_path, pretrained, tokenizer=str(other)))
    with pytest.raises(PluginInputError, match=says):  # pretraining on from a checkpoint too
        plugins.run("pretrain", pretrain_config(
            tmp_path / "pre", make_shards(tmp_path / "tokens", other, n_train=40, n_val=8),
            model={"from_pretrained": str(pretrained)}, data={"tokenizer": str(other), "seq_len": 96}))
    assert not (tmp_path / "sft/final").exists() and not (tmp_path / "pre/final").exists()
    assert plugins.run("sft", _sft_config(tmp_path, pretrained, tokenizer=str(tok), train={"max_steps": 1})).steps == 1


def test_token_shards_of_another_tokenizer_are_refused(tmp_path: Path, pretrained: Path, shards):  # noqa: F811
    """SFT's pre-tokenized shard sets were not compared with the tokenizer's hash (pretraining's were): shards
    made by another tokenizer of the same size trained to done, every id naming another token. The model
    export's tokenizer (the shards' own, re-saved) still passes; the shards' tokenizer retrained in place fails."""
    import shutil

    from corpus.plugins.chat import ChatEncoder
    from corpus.plugins.models import load_tokenizer
    from corpus.shards import write_documents
    from corpus.stages.tokenizer import tokenizer_hash

    tok, _ = shards
    swapped = tmp_path / "swapped"  # the same size, two tokens' ids exchanged: every id range check passes
    shutil.copytree(tok, swapped)
    spec = json.loads((tok / "tokenizer.json").read_text())
    vocab = spec["model"]["vocab"]
    a, b = sorted(vocab, key=vocab.get)[-2:]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    (swapped / "tokenizer.json").write_text(json.dumps(spec))
    enc = ChatEncoder(load_tokenizer(pretrained), train_on="assistant")
    convs = [[{"role": "user", "content": f"say {i}", "train": True},
              {"role": "assistant", "content": f"{i} and {i + 1}.", "train": True}] for i in range(12)]
    examples = [enc.encode(c) for c in convs]

    def chat_shards(made_by: Path) -> Path:
        prefix = tmp_path / "tokens" / made_by.name / "chat"
        write_documents(prefix, [i.tolist() for i, _ in examples], len(enc.tok),
                        masks=[m.tolist() for _, m in examples],
                        meta={"tokenizer": str(made_by), "tokenizer_hash": tokenizer_hash(made_by)})
        return prefix

    def run(prefix: Path, **over):
        return plugins.run("sft", _sft_config(tmp_path, pretrained, data={"datasets": [{"path": str(prefix)}]},
                                              train={"max_steps": 1, "eval_every": 0, "batch_size": 1}, **over))

    assert run(chat_shards(tok)).steps == 1  # the model export's tokenizer: the shards' own, re-saved
    other = chat_shards(swapped)
    says = r"chat: the shards were tokenized with .*swapped, not the tokenizer .*final \(tokenizer hash differs"
    with pytest.raises(ValueError, match=says + ".*point tokenizer at the shards' tokenizer"):
        run(other, output=str(tmp_path / "b"))
    shutil.copy(tok / "tokenizer.json", swapped / "tokenizer.json")  # retrained in place: the same path and size
    with pytest.raises(ValueError, match=r"swapped, not the tokenizer .*swapped \(tokenizer hash differs"):
        run(other, output=str(tmp_path / "c"), tokenizer=str(swapped))
    assert not (tmp_path / "b/final").exists() and not (tmp_path / "c/final").exists()


def test_bad_inputs_are_named_errors_not_tracebacks(tmp_path: Path, pretrained: Path):
    """A chat template with a Jinja syntax error passed --check, then a TemplateSyntaxError traceback; a
    template's raise_exception was a TemplateError traceback; a file path given as the template rendered
    every example as that path (trained to done on constant text); JSONL that is not UTF-8 did not name its
    file; a dataset path that is a folder "did not exist"; a truncated model.safetensors without a
    manifest was a SafetensorError traceback."""
    from corpus.config import ConfigError
    from corpus.plugins.base import PluginInputError

    def config_error(template: str) -> str:
        with pytest.raises(ConfigError) as exc:
            _sft_config(tmp_path, pretrained, data={"chat_template": template})
        return "\n".join(exc.value.errors)

    assert "data: chat_template not a valid Jinja template: line 1: Unexpected end of template" in \
        config_error("{% for m in messages %}{{ m.content }}")
    assert "renders a conversation without its messages' text, so every example would be the same: it is a file " \
        "name" in config_error("templates/chat.jinja")
    assert "render each message's content" in config_error("{% for m in messages %}{{ m.role }}{% endfor %}")
    refuses = ("{% for m in messages %}{% if m.content == 'x' %}{{ raise_exception('no x here') }}{% endif %}"
               "<|{{ m.role }}|>{{ m.content }}<|end|>{% endfor %}{% if add_generation_prompt %}<|assistant|>"
               "{% endif %}")
    bad = tmp_path / "x.jsonl"
    bad.write_text('{"prompt": "x", "response": "y"}\n')
    with pytest.raises(ChatTemplateError, match="the chat template failed on a conversation of roles .*no x here"):
        plugins.run("sft", _sft_config(tmp_path, pretrained, data={"chat_template": refuses, "datasets": [
            {"path": str(bad)}]}))
    bad.write_bytes(b'{"prompt": "hi", "response": "yo"}\n{"prompt": "caf\xe9", "response": "ok"}\n')
    with pytest.raises(SFTDataError, match=r"x.jsonl:2: not UTF-8 text \(byte 15"):
        plugins.run("sft", _sft_config(tmp_path, pretrained, data={"datasets": [{"path": str(bad)}]}))
    with pytest.raises(SFTDataError, match=r"SFT dataset .* is a folder: give a JSONL file"):
        plugins.run("sft", _sft_config(tmp_path, pretrained, data={"datasets": [{"path": str(tmp_path)}]}))
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in pretrained.iterdir():
        if f.name != "manifest.json":  # a model from elsewhere: not checked against a manifest first
            (broken / f.name).write_bytes(f.read_bytes()[:100] if f.name == "model.safetensors" else f.read_bytes())
    with pytest.raises(PluginInputError, match=r"model.from_pretrained: cannot load the model in .*broken \(damaged"):
        plugins.run("sft", _sft_config(tmp_path, broken))


def test_examples_dropped_for_seq_len_say_so(tmp_path: Path, pretrained: Path):
    """Every example cut to a short seq_len without a reply token said "every dataset is empty or has
    weight 0"."""
    with pytest.raises(SFTDataError, match=r"every example was dropped \(cut to seq_len, none kept a reply token; "
                                           r"a: 60 of 60 records dropped, 60 longer than seq_len; b: .*raise "
                                           r"data.seq_len \(8\)"):
        plugins.run("sft", _sft_config(tmp_path, pretrained, data={"seq_len": 8}))


def test_missing_inputs_name_the_command_that_makes_them(tmp_path: Path, monkeypatch, capsys, shards):  # noqa: F811
    """`corpus train sft` before the pretraining it starts from has finished says which command makes the
    model (found among the configs beside it); pretraining without token shards says how to make them."""
    from corpus.cli import main

    monkeypatch.chdir(tmp_path)
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "pre.yaml").write_text("plugin: pretrain\noutput: ../out/pre\ndata: {train: ../out/tokens}\n")
    (conf / "sft.yaml").write_text("plugin: sft\noutput: ../out/sft\nmodel: {from_pretrained: ../out/pre/final}\n"
                                   "data: {datasets: [{path: chat.jsonl}]}\n")

    def error(*args: str) -> str:
        assert main(["train", *args]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        return err.strip()

    assert error("sft", "conf/sft.yaml") == \
        "error: no model at out/pre/final: run `corpus train pretrain conf/pre.yaml` first"
    (tmp_path / "out/pre/checkpoints").mkdir(parents=True)  # the pretraining started and has not finished
    assert error("sft", "conf/sft.yaml") == ("error: no model at out/pre/final: the run in out/pre has not finished "
                                             "(it writes final/ at its end): rerun `corpus train pretrain "
                                             "conf/pre.yaml` to resume it")
    assert error("pretrain", "conf/pre.yaml") == ("error: no token shards at out/tokens: make them with `corpus "
                                                  "tokenize CORPUS --tokenizer TOKENIZER --out out/tokens`")
    _, tokens = shards
    assert error("pretrain", "conf/pre.yaml", "--set", f"data.train={tokens}", "--set", "data.tokenizer=../out/tok") \
        == "error: no tokenizer at out/tok: train one with `corpus tokenizer train CORPUS --out out/tok`"
