"""The preference side of the data layer, shared by the reward model, DPO and PPO plugins: preference
files -> labels (``preferences.read_preferences``, bad records quarantined) -> ranked items (the
annotators' consensus, or each label) -> token ids through the chat template (``plugins/chat.py``).

What a run read is written into its folder: ``preferences.html`` (the aggregation report),
``preferences.json`` (consensus, agreement, annotator profiles) and ``quarantine.parquet``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from corpus.plugins.base import PluginInputError, shown
from corpus.plugins.chat import ChatEncoder, check_configured_template
from corpus.plugins.preferences import (
    Aggregate,
    aggregate,
    check_min_agreement,
    read_preferences,
    write_preference_report,
)
from corpus.readers import InputSpec, plan_tasks, read_task
from corpus.writers import write_bytes_atomic, write_parquet

log = logging.getLogger("corpusforge.train")

USES = ("consensus", "labels")


@dataclass
class PreferenceData:
    """The ``data:`` section of the reward-model and DPO configs."""

    train: str = ""  # ranking or pair JSONL (file, folder or glob; .gz/.zst)
    validation: str = ""  # held-out labels; default: validation_fraction of the train items
    validation_fraction: float = 0.1
    use: str = "consensus"  # consensus: one ranking per item fitted from every label | labels: each label
    min_agreement: float | None = None  # exclude items whose Kendall's W is below this
    max_len: int = 256  # tokens of prompt + response (the prompt is cut from the left first)
    chat_template: str = ""  # default: the tokenizer's own, else the project's
    report: bool = True  # write preferences.html / .json into the run folder

    def __post_init__(self) -> None:
        if not self.train:
            raise ValueError("train is required (a ranking or pair JSONL)")
        if self.use not in USES:
            raise ValueError(f"use must be one of {USES}, got {self.use!r}")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError("validation_fraction must be in [0, 1)")
        if self.max_len < 8:
            raise ValueError("max_len must be >= 8")
        check_min_agreement(self.min_agreement)
        check_configured_template(self.chat_template)


@dataclass
class RankedItem:
    """A prompt, its responses and their ranks (1 = best, ties share), from the consensus or one label."""

    item_id: str
    prompt: str
    responses: tuple[str, ...]
    ranks: tuple[int, ...]
    margin: float | None = None
    aspects: dict[str, list[float | None]] = field(default_factory=dict)  # name -> score per response


def _items(agg: Aggregate, labels: list[Any], use: str) -> list[RankedItem]:
    if use == "consensus":
        return [RankedItem(c.item_id, c.prompt, c.responses, c.ranking, c.margin, c.aspects) for c in agg.kept()]
    excluded = set(agg.excluded_items)
    out = []
    for p in labels:
        if p.item_id in excluded:
            continue
        aspects = {a: [s.get(i) for i in range(len(p.responses))] for a, s in p.aspects.items()}
        out.append(RankedItem(p.item_id, p.prompt, p.responses, p.ranking, p.margin, aspects))
    return out


def load_items(cfg: PreferenceData, resolve: Any, seed: int, out: Path | None) -> tuple[list[RankedItem],
                                                                                       list[RankedItem], dict]:
    """(train items, validation items, stats); writes the report files into ``out`` when given."""
    def read(path: str) -> tuple[list[Any], Any]:
        labels, bad = read_preferences(resolve(path))
        if not labels:
            kinds = ", ".join(f"{k} {n}" for k, n in Counter(bad["kind"].to_list()).most_common(3))
            raise PluginInputError(f"{shown(resolve(path))}: no usable preference record"
                                   + (f" ({bad.height} quarantined: {kinds})" if bad.height else ""))
        return labels, bad

    labels, bad = read(cfg.train)
    agg = aggregate(labels, cfg.min_agreement)
    items = _items(agg, labels, cfg.use)
    if cfg.validation:
        v_labels, v_bad = read(cfg.validation)
        val = _items(aggregate(v_labels, cfg.min_agreement), v_labels, cfg.use)
        train, bad = items, _concat(bad, v_bad)
    else:  # split by item, so every label of an item falls on one side
        ids = sorted({it.item_id for it in items})
        order = np.random.default_rng([seed, 18]).permutation(len(ids))
        held = {ids[i] for i in order[:held_out(len(ids), cfg.validation_fraction)]}
        train = [it for it in items if it.item_id not in held]
        val = [it for it in items if it.item_id in held]
    if not train:
        raise PluginInputError(f"{shown(resolve(cfg.train))}: no training item left (all excluded or held out)")
    note = no_validation_note(len(val), cfg.validation_fraction if not cfg.validation else None, "item")
    stats = {"labels": len(labels), "quarantined": bad.height,
             "quarantined_by_kind": dict(Counter(bad["kind"].to_list())), "items": len(agg.consensus),
             "excluded_items": len(agg.excluded_items), "annotators": len(agg.annotators),
             "kendalls_w": agg.agreement["kendalls_w"], "krippendorff_alpha": agg.agreement["krippendorff_alpha"],
             "train_items": len(train), "validation_items": len(val), "use": cfg.use,
             **({"no_validation": note} if note else {})}
    if out is not None and cfg.report:
        out.mkdir(parents=True, exist_ok=True)
        write_preference_report(agg, out / "preferences.html")
        write_bytes_atomic(out / "preferences.json", json.dumps(agg.to_dict(), indent=1).encode())
        if bad.height:
            write_parquet(bad, out / "quarantine.parquet")
    return train, val, stats


def held_out(n: int, fraction: float) -> int:
    """How many of n items (or prompts) a validation_fraction holds out: at least one when the fraction
    is above 0 and one is left to train on (int() rounded 0.05 of 12 items to none: no evaluation)."""
    return max(int(n * fraction), 1 if fraction > 0 and n >= 2 else 0)


def no_validation_note(n_val: int, fraction: float | None, unit: str) -> str | None:
    """Why a run has nothing to evaluate on, logged as a warning (None: it has, or was asked for none;
    ``fraction`` None: a validation file was given)."""
    if n_val or fraction == 0:
        return None
    why = ("nothing of the validation data is left" if fraction is None
           else f"validation_fraction {fraction:g} holds out none of the one {unit} there is")
    note = f"no validation {unit}: {why}; the run reports no val_* metrics and keeps no best model"
    log.warning(note)
    return note


def _concat(a: Any, b: Any) -> Any:
    import polars as pl

    return pl.concat([a, b])


class PairEncoder:
    """Prompt and response token ids through the chat template, cut to ``max_len`` (prompt from the
    left first, then the response from the right)."""

    def __init__(self, tokenizer: Any, template: str | None, max_len: int):
        self.chat = ChatEncoder(tokenizer, template, "assistant")
        self.max_len = max_len

    def prompt(self, prompt: str) -> list[int]:
        return self.chat.render([{"role": "user", "content": prompt}], generation_prompt=True)

    def full_ids(self, prompts: list[str], responses: list[str]) -> list[list[int]]:
        """The ids ``encode`` gives, without the response mask, for many exchanges at once (one render
        each and one batched tokenizer call: what scoring needs), cut to their last ``max_len`` tokens."""
        tok = self.chat.tok
        texts = [tok.apply_chat_template([{"role": "user", "content": p}, {"role": "assistant", "content": r}],
                                         tokenize=False, chat_template=self.chat.template)
                 for p, r in zip(prompts, responses, strict=True)]
        return [ids[-self.max_len:] for ids in self.chat.tok(texts, add_special_tokens=False)["input_ids"]]

    def encode(self, prompt: str, response: str) -> tuple[np.ndarray, np.ndarray]:
        """(ids, response mask) of one exchange."""
        ids, mask = self.chat.encode([{"role": "user", "content": prompt, "train": False},
                                      {"role": "assistant", "content": response, "train": True}])
        extra = ids.size - self.max_len
        if extra > 0:
            start = int(np.argmax(mask > 0))  # the first response token
            cut = min(extra, max(start - 1, 0))  # keep at least one prompt token before the response
            ids, mask = ids[cut:], mask[cut:]
            ids, mask = ids[:self.max_len], mask[:self.max_len]
        return ids, mask


def response_labels(ids: np.ndarray, mask: np.ndarray) -> torch.Tensor:
    """Causal-LM labels of a response: the next token where it is a response token, else -100."""
    labels = np.full(ids.size, -100, dtype=np.int64)
    labels[:-1] = np.where(mask[1:] > 0, ids[1:], -100)
    return torch.from_numpy(labels)


class RankedDataset(Dataset):
    """Rows for a ranking loss: an item's K responses (prompt + response ids), their ranks, margin and
    aspect scores. Keys are ``(epoch, index)`` as the trainer's sampler hands them out."""

    def __init__(self, items: list[RankedItem], enc: PairEncoder, aspects: list[str] | None = None):
        self.items, self.enc, self.aspects = items, enc, aspects or []
        self.encoded = [[enc.encode(it.prompt, r)[0] for r in it.responses] for it in items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: Any) -> dict[str, Any]:
        i = key[1] if isinstance(key, tuple) else key
        it = self.items[i]
        scores = [[np.nan if v is None else v for v in it.aspects.get(a, [None] * len(it.responses))]
                  for a in self.aspects]
        return {"ids": [torch.from_numpy(x) for x in self.encoded[i]], "ranks": torch.tensor(it.ranks),
                "margin": torch.tensor(it.margin if it.margin is not None else 0.0),
                "aspects": torch.tensor(scores, dtype=torch.float32).reshape(len(self.aspects), len(it.responses))}


def collate_ranked(rows: list[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    """[B * K, T] ids (right-padded, K padded to the batch's largest with empty slots), attention mask,
    ranks [B, K] (0 for empty slots), valid [B, K], margin [B], aspects [B, A, K] (NaN = no rating)."""
    b, k = len(rows), max(len(r["ids"]) for r in rows)
    t = max(x.numel() for r in rows for x in r["ids"])
    ids = torch.full((b * k, t), pad_id, dtype=torch.long)
    attn = torch.zeros((b * k, t), dtype=torch.long)
    ranks = torch.zeros((b, k), dtype=torch.long)
    n_aspects = rows[0]["aspects"].shape[0]
    aspects = torch.full((b, n_aspects, k), float("nan"))
    for i, r in enumerate(rows):
        for j, x in enumerate(r["ids"]):
            ids[i * k + j, :x.numel()] = x
            attn[i * k + j, :x.numel()] = 1
        n = len(r["ids"])
        attn[i * k + n:(i + 1) * k, 0] = 1  # empty slots: one pad token, so their (ignored) score is finite
        ranks[i, :n] = r["ranks"]
        aspects[i, :, :n] = r["aspects"]
    return {"input_ids": ids, "attention_mask": attn, "ranks": ranks, "valid": (ranks > 0).long(),
            "margin": torch.stack([r["margin"] for r in rows]), "aspects": aspects}


def read_prompts(path: Path) -> list[str]:
    """The ``prompt`` of each record of a JSONL (prompts, tasks or rankings), read through the readers;
    records without one are skipped and counted by the caller's stats."""
    spec = InputSpec(source="prompts", path=str(path), format="jsonl", text_key="prompt",
                     max_quarantine_fraction=1.0)
    out: list[str] = []
    skipped: Counter[str] = Counter()
    for task in plan_tasks([spec]):
        for chunk in read_task(task):
            out += chunk.docs["text"].to_list()
            skipped.update(chunk.bad["kind"].to_list())
    if skipped:  # a file of mixed formats (chat records among prompts) is used in part: say how much
        n = sum(skipped.values())
        kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(skipped.items()))
        log.warning("%s: %s of %s records skipped, without a usable 'prompt' field (%s)", path, f"{n:,}",
                    f"{n + len(out):,}", kinds)
    return out


# ---------------------------------------------------------------- reward models


def sequence_scores(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """[N, heads]: a sequence-classification model's head on the hidden state of each right-padded row's
    last real token (found from the attention mask, so a pad id equal to the end-of-text id is harmless)."""
    from corpus.plugins.checkpoint import unwrap

    m = unwrap(model)
    hidden = getattr(m, m.base_model_prefix)(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    last = (attention_mask.sum(dim=1) - 1).clamp(min=0)
    return m.score(hidden[torch.arange(hidden.shape[0], device=hidden.device), last])


class RewardScorer:
    """A trained reward model (the reward plugin's export) scoring (prompt, response) texts: the
    weighted total of its aspect heads, as the plugin trained it."""

    def __init__(self, folder: Path, device: torch.device | str = "cpu", max_len: int = 512):
        import transformers as tf

        from corpus.plugins.chat import chat_template
        from corpus.plugins.checkpoint import check_export
        from corpus.plugins.models import load_tokenizer, quiet_transformers

        quiet_transformers()
        check_export(folder)
        arch = json.loads((folder / "config.json").read_text()).get("architectures") or ["?"]
        if not any(a.endswith("ForSequenceClassification") for a in arch):  # loaded as one, it would score at random
            raise PluginInputError(f"{shown(folder)} is not a reward model (a {arch[0]}; a reward model is a sequence "
                                   "classifier): give the final/ of a `corpus train reward` run")
        self.tokenizer = load_tokenizer(folder)
        self.model = tf.AutoModelForSequenceClassification.from_pretrained(str(folder), dtype=torch.float32)
        self.model.to(device).eval().requires_grad_(False)
        info = json.loads((folder / "corpusforge.json").read_text()) if (folder / "corpusforge.json").is_file() else {}
        weights = info.get("reward", {}).get("weights") or [1.0] * self.model.config.num_labels
        self.weights = torch.tensor(weights, dtype=torch.float32, device=device)
        self.enc = PairEncoder(self.tokenizer, chat_template(self.tokenizer), max_len)
        pad = self.tokenizer.pad_token_id
        self.pad = pad if pad is not None else self.tokenizer.eos_token_id
        self.device = device

    @torch.no_grad()
    def score(self, prompts: list[str], responses: list[str], batch: int = 32) -> torch.Tensor:
        out = []
        for s in range(0, len(prompts), batch):
            rows = [torch.tensor(x) for x in self.enc.full_ids(prompts[s:s + batch], responses[s:s + batch])]
            t = max(x.numel() for x in rows)
            ids = torch.full((len(rows), t), self.pad, dtype=torch.long)
            attn = torch.zeros((len(rows), t), dtype=torch.long)
            for i, x in enumerate(rows):
                ids[i, :x.numel()], attn[i, :x.numel()] = x, 1
            scores = sequence_scores(self.model, ids.to(self.device), attn.to(self.device))
            out.append(scores @ self.weights)
        return torch.cat(out).float().cpu() if out else torch.zeros(0)


# ---------------------------------------------------------------- sampling


@torch.no_grad()
def sample(policy: torch.nn.Module, ids: torch.Tensor, attn: torch.Tensor, *, stops: list[int], pad_id: int,
           max_new_tokens: int, temperature: float = 1.0, top_k: int = 0) -> dict[str, torch.Tensor]:
    """KV-cached batched sampling from left-padded prompts, in eval mode: the prompts in one pass, then
    one token per row and step on the cache until every row has stopped (``generate``'s draws: at least
    one token, temperature, then top-k; a stopped row continues with padding), without its per-step
    machinery. Returns the full sequences, their attention mask and positions, the response mask (up to
    and including the first stop token), whether each response stopped, the prompt length, and from the
    same passes the log-probabilities of the drawn tokens (untempered, 0 after the response) and the
    hidden states that predicted them (what a value head reads)."""
    import warnings

    from transformers import DynamicCache

    from corpus.plugins import rl_math as M

    was_training = policy.training
    policy.eval()
    base, head = getattr(policy, policy.base_model_prefix), policy.get_output_embeddings()
    b, p = ids.shape
    stop = torch.tensor(stops, dtype=torch.long, device=ids.device)
    done = torch.zeros(b, dtype=torch.bool, device=ids.device)
    cache = DynamicCache()
    mask, step_ids, pos = attn, ids, (attn.cumsum(1) - 1).clamp(min=0)
    tokens, states, logits = [], [], []
    for t in range(max_new_tokens):
        with warnings.catch_warnings():  # transformers 5 renames past_key_values (4.x knows only that name)
            warnings.simplefilter("ignore", FutureWarning)
            h = base(input_ids=step_ids, attention_mask=mask, position_ids=pos, past_key_values=cache,
                     use_cache=True).last_hidden_state[:, -1]
        states.append(h)
        logits.append(head(h).float())
        scores = logits[-1] / temperature
        if t == 0 and stops:
            scores[:, stop] = -float("inf")
        if top_k:
            scores = scores.masked_fill(scores < scores.topk(top_k).values[:, -1:], -float("inf"))
        tok = torch.multinomial(scores.softmax(-1), 1).squeeze(1).masked_fill(done, pad_id)
        tokens.append(tok)
        done |= torch.isin(tok, stop)
        if bool(done.all()) or t == max_new_tokens - 1:
            break
        mask = torch.cat([mask, mask.new_ones(b, 1)], dim=1)
        step_ids, pos = tok[:, None], pos[:, -1:] + 1
    policy.train(was_training)
    response = torch.stack(tokens, 1)
    resp_mask, has_stop = M.response_mask(response, stops)
    full = torch.cat([attn, resp_mask], dim=1)
    logp = M.token_logprobs(torch.stack(logits, 1), response.masked_fill(resp_mask == 0, -100))
    return {"input_ids": torch.cat([ids, response], dim=1), "attention_mask": full,
            "position_ids": (full.cumsum(1) - 1).clamp(min=0), "response_mask": resp_mask, "has_eos": has_stop,
            "prompt_len": torch.tensor(p), "logp": logp, "hidden": torch.stack(states, 1)}


def left_pad(rows: list[dict[str, torch.Tensor]], pad_id: int) -> dict[str, torch.Tensor]:
    """Prompts left-padded (generation continues every row at the same position)."""
    t = max(r["input_ids"].numel() for r in rows)
    ids = torch.full((len(rows), t), pad_id, dtype=torch.long)
    attn = torch.zeros((len(rows), t), dtype=torch.long)
    for i, r in enumerate(rows):
        n = r["input_ids"].numel()
        ids[i, t - n:], attn[i, t - n:] = r["input_ids"], 1
    return {"input_ids": ids, "attention_mask": attn, "row": torch.stack([r["row"] for r in rows])}


def response_texts(tokenizer: Any, seq: dict[str, torch.Tensor], pad_id: int) -> list[str]:
    """The decoded responses of ``sample``'s output (special tokens, the stop marker among them, dropped)."""
    p = int(seq["prompt_len"])
    mask = seq["response_mask"]
    return tokenizer.batch_decode(seq["input_ids"][:, p:] * mask + pad_id * (1 - mask), skip_special_tokens=True)


def load_function(spec: str, key: str, base: Path | None = None) -> Any:
    """A function named in a config, ``module:function`` or ``file.py:function`` (relative to ``base``):
    a reward or a judge, trusted code as a plugin is (``corpus.registry.load_object``)."""
    from corpus.registry import load_object

    try:
        fn = load_object(spec, base)
    except (ImportError, AttributeError, ValueError) as exc:
        raise PluginInputError(f"{key} {spec!r}: {exc}") from exc
    if not callable(fn):
        raise PluginInputError(f"{key} {spec!r} is not a function")
    return fn


def score_function(spec: str, key: str, base: Path | None = None) -> Any:
    """``load_function`` for a function that scores responses, ``fn(prompts, responses) -> scores``, its
    output checked at each call (one finite number per response: a wrong one was a torch traceback, or
    NaN losses), and given as a list of floats."""
    fn = load_function(spec, key, base)

    def score(prompts: list[str], responses: list[str]) -> list[float]:
        return checked_scores(fn(prompts, responses), len(responses), f"{key} {spec!r}")

    return score


def checked_scores(out: Any, n: int, what: str) -> list[float]:
    """``out`` as n finite floats, else a PluginInputError naming ``what`` returned it."""
    import numbers

    if isinstance(out, torch.Tensor | np.ndarray):
        out = out.tolist()
    if isinstance(out, str | bytes | dict) or not hasattr(out, "__len__"):
        raise PluginInputError(f"{what} returned {_brief(out)}, expected a list of {n} numbers, one per response")
    if len(out) != n:
        raise PluginInputError(f"{what} returned {len(out)} scores for {n} responses, expected one per response")
    for i, v in enumerate(out):
        if not isinstance(v, numbers.Real) or isinstance(v, bool):
            raise PluginInputError(f"{what} returned {_brief(v)} as the score of response {i}, expected a number")
        if not np.isfinite(float(v)):
            raise PluginInputError(f"{what} returned {v} as the score of response {i}, expected a finite number")
    return [float(v) for v in out]


def _brief(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"
