"""The PPO plugin: on a toy task with a known reward (the share of vowels in a response) a tiny model's
mean reward rises while the KL to the reference stays bounded, on three seeds; a run killed in the
middle of a rollout resumes exactly; the export is the policy alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from rlhfkit import assert_resumes_exactly, ppo_config, prompt_file
from safetensors.torch import load_file
from trainkit import read_metrics, shards  # noqa: F401 (fixture)

from corpus import plugins
from corpus.config import ConfigError

TOY = {"ppo": {"rollout_batch": 32, "epochs": 2, "max_new_tokens": 8, "kl_coef": 0.01, "kl_target": 2.0,
               "kl_horizon": 100},
       "train": {"batch_size": 16, "lr": 1e-2, "max_steps": 40, "eval_every": 40}}


@pytest.fixture(scope="module")
def prompts(tmp_path_factory):
    return prompt_file(tmp_path_factory.mktemp("ppo") / "prompts.jsonl", 200)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ppo_raises_the_toy_reward_with_bounded_kl(tmp_path: Path, shards, prompts, seed: int):  # noqa: F811
    tok, _ = shards
    cfg = ppo_config(tmp_path, prompts, tok, **{**TOY, "train": {**TOY["train"], "seed": seed}})
    r = plugins.run("ppo", cfg)
    rows = read_metrics(tmp_path)
    first = rows[0]["rollout_reward"]  # the initial policy's samples on 32 prompts
    assert r.final_metrics["val_reward"] > first + 0.1, (first, r.final_metrics)
    assert rows[-1]["rollout_reward"] > first + 0.1
    assert 0 < r.final_metrics["val_kl"] < 8  # nats per response of 8 tokens
    # the adaptive controller moves the coefficient towards the KL target (2) after every rollout
    per_rollout = rows[::4]  # 32 prompts, micro-batches of 16, 2 epochs: 4 steps per rollout
    for now, after in zip(per_rollout, per_rollout[1:], strict=False):
        assert (after["rollout_kl_coef"] > now["rollout_kl_coef"]) == (now["rollout_kl"] > 2.0)


def test_ppo_resumes_exactly_in_the_middle_of_a_rollout(tmp_path: Path, shards, prompts):  # noqa: F811
    tok, _ = shards
    # 16 prompts per rollout, micro-batches of 8, 2 epochs: 4 steps per rollout; the checkpoint at step 2
    # holds a half-used rollout buffer
    over = {"train": {"max_steps": 6, "save_every": 2, "eval_every": 3}, "ppo": {"kl_target": 1.0}}
    assert_resumes_exactly("ppo", lambda out: ppo_config(out, prompts, tok, **over), tmp_path, kill_at=3,
                           resumed_from=2)
    a = read_metrics(tmp_path / "a")
    assert [x["rollout_kl_coef"] for x in a] == [x["rollout_kl_coef"] for x in read_metrics(tmp_path / "b")]
    assert [r["val_reward"] for r in read_metrics(tmp_path / "a", "eval")] == \
        [r["val_reward"] for r in read_metrics(tmp_path / "b", "eval")]


def test_ppo_resumed_between_log_lines_logs_the_same_clip_fraction(tmp_path: Path, shards, prompts):  # noqa: F811
    """A log line averages the clip fraction of the steps since the last one; killed after the checkpoint
    at step 6 and resumed, step 8 logged the mean of steps 7 and 8 alone."""
    tok, _ = shards
    over = {"train": {"max_steps": 8, "save_every": 2, "eval_every": 8, "log_every": 4, "lr": 1e-2}}
    assert_resumes_exactly("ppo", lambda out: ppo_config(out, prompts, tok, **over), tmp_path, kill_at=7,
                           resumed_from=6)
    a, b = read_metrics(tmp_path / "a"), read_metrics(tmp_path / "b")
    assert a[-1]["step"] == 8 and a[-1]["clipfrac"] > 0
    assert [(x["step"], x["clipfrac"]) for x in a] == [(y["step"], y["clipfrac"]) for y in b]


def test_ppo_exports_the_policy_and_checkpoints_the_value_head(tmp_path: Path, shards, prompts):  # noqa: F811
    tok, _ = shards
    plugins.run("ppo", ppo_config(tmp_path, prompts, tok, train={"max_steps": 2, "eval_every": 2},
                                  ppo={"missing_eos_penalty": 1.0, "overlong_buffer": 4, "overlong_penalty": 0.5,
                                       "kl_estimator": "k3"}))
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "final")
    assert model.config.hidden_size == 32
    ckpt = load_file(next((tmp_path / "checkpoints").glob("step-*")) / "model.safetensors")
    final = load_file(tmp_path / "final/model.safetensors")
    assert "value_head.weight" in ckpt and not any("value" in k for k in final)
    # the export is a policy, not a reward model: given as ppo.reward_model, it is refused (it was loaded as a
    # sequence classifier with a new, random head, and scored responses at random)
    from corpus.plugins.base import PluginInputError
    from corpus.plugins.rlhf_data import RewardScorer

    with pytest.raises(PluginInputError, match=r"final is not a reward model \(a LlamaForCausalLM; a reward model"):
        RewardScorer(tmp_path / "final")
    row = read_metrics(tmp_path)[0]
    # a response without an end marker runs to max_new_tokens: it loses the missing-EOS penalty (1) and
    # the full overlong penalty (0.5); one that ends loses at most the overlong penalty
    no_eos = 1 - row["rollout_eos_rate"]
    assert row["rollout_eos_rate"] < 1
    assert row["rollout_reward"] - 1.5 <= row["rollout_score"] <= row["rollout_reward"] - 1.5 * no_eos + 1e-6
    assert torch.isfinite(torch.tensor(row["loss"]))


def test_ppo_bf16_updates_train_fp32_weights(tmp_path: Path, shards, prompts):  # noqa: F811
    """precision bf16 (the benchmark's bf16 setting): autocast updates, fp32 weights and finite losses."""
    tok, _ = shards
    plugins.run("ppo", ppo_config(tmp_path, prompts, tok, train={"max_steps": 2, "eval_every": 2,
                                                                 "precision": "bf16"}))
    rows = read_metrics(tmp_path)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    final = load_file(tmp_path / "final/model.safetensors")
    assert {t.dtype for t in final.values()} == {torch.float32}


def test_records_without_a_prompt_are_counted(tmp_path: Path, caplog):
    """A prompts file of mixed formats (chat records among prompts) was used in part, silently."""
    from rlhfkit import write_jsonl

    from corpus.plugins.rlhf_data import read_prompts

    path = write_jsonl(tmp_path / "mixed.jsonl", [{"prompt": "a"}, {"messages": [{"role": "user", "content": "b"}]},
                                                   {"prompt": "c"}])
    with caplog.at_level("WARNING"):
        assert read_prompts(path) == ["a", "c"]
    assert "mixed.jsonl: 1 of 3 records skipped, without a usable 'prompt' field (missing_text 1)" in caplog.text


def test_ppo_config_needs_exactly_one_reward(tmp_path: Path, shards, prompts):  # noqa: F811
    tok, _ = shards
    with pytest.raises(ConfigError, match="exactly one of reward_model"):
        ppo_config(tmp_path, prompts, tok, ppo={"reward_model": "rm/final"})


@pytest.mark.parametrize("fn,says", [("rlhfkit:nope", "module 'rlhfkit' has no attribute 'nope'"),
                                      ("json:decoder", "is not a function"),
                                      ("missing.py:score", "no Python file at")])
def test_ppo_config_loads_its_reward_function(tmp_path: Path, shards, prompts, fn, says):  # noqa: F811
    """A reward_fn that cannot be loaded was found once the models had loaded, minutes into a run; the
    config check (`corpus train ppo --check`) says it now."""
    tok, _ = shards
    with pytest.raises(ConfigError, match=f"ppo.reward_fn '{fn}'.*{says}"):
        ppo_config(tmp_path, prompts, tok, ppo={"reward_fn": fn})


@pytest.mark.parametrize("temperature", [0.0, -1.0])
def test_ppo_config_refuses_a_temperature_sampling_cannot_divide_by(tmp_path: Path, shards, prompts, temperature):  # noqa: F811
    tok, _ = shards
    with pytest.raises(ConfigError, match="temperature must be > 0"):
        ppo_config(tmp_path, prompts, tok, ppo={"temperature": temperature})


@pytest.mark.parametrize("rollout_batch", [4, 12])
def test_ppo_config_needs_a_rollout_of_whole_micro_batches(tmp_path: Path, shards, prompts, rollout_batch):  # noqa: F811
    """A rollout smaller than a micro-batch crashed the run (pop from empty list); one not a multiple of
    it trained on part of each rollout, silently."""
    tok, _ = shards
    with pytest.raises(ConfigError, match=rf"ppo.rollout_batch \({rollout_batch}\) must be a multiple of "
                                          r"train.batch_size \(8\)"):
        ppo_config(tmp_path, prompts, tok, ppo={"rollout_batch": rollout_batch})


BAD_REWARDS = '''
def nan(prompts, responses):
    return [float("nan")] * len(responses)

def few(prompts, responses):
    return [1.0] * (len(responses) - 1)

def nothing(prompts, responses):
    return None

def words(prompts, responses):
    return ["good"] * len(responses)
'''


@pytest.mark.parametrize("fn,says", [
    ("nan", "returned nan as the score of response 0, expected a finite number"),
    ("few", "returned 15 scores for 16 responses, expected one per response"),
    ("nothing", "returned NoneType None, expected a list of 16 numbers"),
    ("words", "returned str 'good' as the score of response 0, expected a number")])
def test_ppo_refuses_what_its_reward_function_returns_before_any_update(tmp_path: Path, shards, prompts, fn,  # noqa: F811
                                                                          says):
    """Too few scores, None or strings were torch tracebacks; NaN trained with loss nan."""
    from corpus.plugins.base import PluginInputError

    tok, _ = shards
    (tmp_path / "rewards.py").write_text(BAD_REWARDS)
    spec = f"{tmp_path / 'rewards.py'}:{fn}"
    cfg = ppo_config(tmp_path / "run", prompts, tok, ppo={"reward_fn": spec})
    with pytest.raises(PluginInputError, match=f"ppo.reward_fn '{spec}' {says}"):
        plugins.run("ppo", cfg)
    assert not (tmp_path / "run/metrics.jsonl").exists() or not read_metrics(tmp_path / "run")


def test_ppo_holds_out_distinct_prompts_never_trained_on(tmp_path: Path, shards):  # noqa: F811
    """The bundled prompts repeat (200 lines, 156 distinct): a split by position put 8 of the 20
    validation prompts among the training prompts."""
    from corpus.plugins.rlhf_data import read_prompts
    from corpus.plugins.runtime import Runtime

    tok, _ = shards
    bundled = Path(__file__).parents[1] / "examples/four_stages/prompts.jsonl"
    prompts = read_prompts(bundled)
    cfg = ppo_config(tmp_path, bundled, tok, data={"validation_fraction": 0.1})
    task = plugins.get("ppo")().build(cfg, Runtime(torch.device("cpu")))
    train, val = task.train.texts, task.val.texts
    assert len(val) == len(set(val)) == int(len(set(prompts)) * 0.1) and not set(val) & set(train)
    assert len(train) + sum(prompts.count(p) for p in val) == len(prompts)  # every line on one side


def test_a_small_validation_fraction_still_holds_out_a_prompt():
    from corpus.plugins.ppo import split_prompts

    assert split_prompts(["a", "b", "a", "c"], 0.1) == (["b", "c"], ["a"])  # int(0.3) held out none
    assert split_prompts(["a", "a"], 0.1) == (["a", "a"], [])  # one prompt: it trains


def tiny_policy(vocab: int = 50):
    from corpus.plugins.models import ModelConfig, SpecialIds, build_model

    torch.manual_seed(0)
    return build_model(ModelConfig(arch="llama", hidden_size=32, layers=2, heads=2), "causal", vocab, 64,
                       SpecialIds(eos=0, pad=1))


def ragged_prompts(vocab: int = 50):
    from corpus.plugins.rlhf_data import left_pad

    g = torch.Generator().manual_seed(1)
    return left_pad([{"input_ids": torch.randint(2, vocab, (n,), generator=g), "row": torch.tensor(i)}
                     for i, n in enumerate([5, 9, 7, 3])], pad_id=1)


@pytest.mark.parametrize(("stops", "temperature", "top_k"), [
    ([0, 3, 4, 5], 1.0, 0),  # some rows stop, others run to max_new_tokens
    ([0], 0.7, 5),  # temperature and top-k
    (list(range(0, 40)), 1.0, 0),  # every row stops within a few tokens: the loop ends early, as generate does
])
def test_sampling_loop_draws_what_generate_draws(stops, temperature, top_k):
    from corpus.plugins.rlhf_data import sample

    model, b = tiny_policy(), ragged_prompts()
    torch.manual_seed(5)
    ours = sample(model, b["input_ids"], b["attention_mask"], stops=stops, pad_id=1, max_new_tokens=12,
                  temperature=temperature, top_k=top_k)
    torch.manual_seed(5)
    hf = model.generate(input_ids=b["input_ids"], attention_mask=b["attention_mask"], do_sample=True,
                        temperature=temperature, top_k=top_k, top_p=1.0, max_new_tokens=12, min_new_tokens=1,
                        eos_token_id=stops, pad_token_id=1, use_cache=True)
    assert torch.equal(ours["input_ids"], hf)
    response = hf[:, b["input_ids"].shape[1]:]
    assert not torch.isin(response[:, 0], torch.tensor(stops)).any()  # at least one token before a stop
    if len(stops) > 4:
        assert response.shape[1] < 12 and bool(ours["has_eos"].all())


def test_rollout_logprobs_and_values_are_those_of_a_full_pass():
    """The rollout takes the policy's old log-probabilities and values from the sampling passes: they must
    be the numbers a full no-grad pass over the sampled sequences gives (to float rounding)."""
    from corpus.plugins import rl_math as M
    from corpus.plugins.ppo import PolicyWithValue
    from corpus.plugins.rlhf_data import sample

    model, b = PolicyWithValue(tiny_policy()), ragged_prompts()
    torch.manual_seed(3)
    seq = sample(model.policy, b["input_ids"], b["attention_mask"], stops=[0, 3, 4, 5], pad_id=1, max_new_tokens=12)
    p, mask = int(seq["prompt_len"]), seq["response_mask"].bool()
    assert 0 < mask.sum() < mask.numel()  # some responses stopped early
    with torch.no_grad():
        logits, values = model.eval()(seq["input_ids"], seq["attention_mask"], seq["position_ids"], p - 1)
        step_values = model.value_head(seq["hidden"]).squeeze(-1)
    full = M.token_logprobs(logits, seq["input_ids"][:, p:].masked_fill(~mask, -100))
    assert torch.allclose(seq["logp"], full, atol=1e-5, rtol=0)
    assert torch.equal(seq["logp"][~mask], torch.zeros_like(seq["logp"][~mask]))
    assert torch.allclose(step_values[mask], values[mask], atol=1e-5, rtol=0)


def test_rlhf_cycle_sampling_refuses_a_zero_temperature():
    from corpus.plugins.rlhf import Sampling

    with pytest.raises(ValueError, match="temperature must be > 0, got 0"):
        Sampling(temperature=0.0)
