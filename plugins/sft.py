"""Supervised fine-tuning on chat / instruction records: this file is the plugin's config and its
data (records -> chat template -> token ids + target mask); the task is ``corpus.plugins.tasks.SFT``.

Records (JSONL) are either ``messages`` (a list of ``{role, content}``, roles mapped through
``role_map``) or prompt/response pairs (field names configurable, optional ``prompt_template``).
Each becomes token ids with the tokenizer's chat template, and a target mask computed from **token
spans**: for assistant message k, the tokens between the render of ``messages[:k]`` with the
generation prompt and the render of ``messages[:k+1]``. Both renders are checked to be token
prefixes of the full conversation, so a template that is not prefix-stable is an error, never a
silently shifted mask. The first reply token is a target (its label sits on the generation prompt's
last token); system and user tokens, role markers and few-shot exemplar replies are not.

Examples are packed whole into rows (best-fit decreasing, positions restart per example, so
attention stays within an example), drawn from several datasets in proportion to their weights
(Megatron-style deterministic blending), and trained with the shared trainer, optionally through
LoRA adapters (``peft``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from corpus.plugins.base import PluginConfig, PluginInputError, SampleConfig, TrainPlugin
from corpus.plugins.chat import (  # noqa: F401 (sft API)
    ChatEncoder,
    ChatTemplateError,
    chat_template,
    check_configured_template,
    template_problem,
)
from corpus.plugins.data import BlendedDataset, PackedExamples, check_sets
from corpus.plugins.models import (
    LoraSettings,
    ModelConfig,
    SpecialIds,
    apply_lora,
    build_model,
    check_seq_len,
    plugin_tokenizer,
    plugin_tokenizer_path,
    same_tokenizer,
    stop_ids,
)
from corpus.plugins.runtime import Runtime
from corpus.plugins.tasks import SFT as SFTTask
from corpus.shards import IndexedDataset, ShardError

ROLES = ("system", "user", "assistant")
TRAIN_ON = ("assistant", "last", "all")
FORMATS = ("auto", "messages", "prompt_response")


class SFTDataError(PluginInputError):
    pass


@dataclass
class SFTDataset:
    path: str = ""  # JSONL of records, or a token shard prefix with a .mask (from the tokenize stage)
    weight: float = 1.0  # share of the training mixture (relative to the other datasets)
    name: str = ""
    format: str = "auto"  # auto | messages | prompt_response
    messages_key: str = "messages"
    role_key: str = "role"
    content_key: str = "content"
    role_map: dict[str, str] = field(default_factory=dict)  # e.g. {human: user, gpt: assistant}
    prompt_key: str = "prompt"
    response_key: str = "response"
    system_key: str = "system"
    prompt_template: str = ""  # e.g. "{instruction}\n\n{input}": each {field} is the record's field
    few_shot: int = 0  # exchanges from other records of this dataset shown first (not trained on)
    validation: str = ""  # JSONL held out for validation (default: validation_fraction of `path`)
    limit: int = 0  # use the first N records only (0: all)

    def __post_init__(self) -> None:
        if not self.path:
            raise ValueError("path is required")
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {self.format!r}")
        if self.weight < 0 or self.few_shot < 0:
            raise ValueError("weight and few_shot must be >= 0")
        bad = {v for v in self.role_map.values() if v not in ROLES}
        if bad:
            raise ValueError(f"role_map values must be among {ROLES}, got {sorted(bad)}")


@dataclass
class SFTData:
    datasets: list[SFTDataset] = field(default_factory=list)
    seq_len: int = 512
    packing: bool = True
    train_on: str = "assistant"  # assistant: every reply | last: the final reply | all: every token
    truncation: str = "right"  # right: keep the first seq_len tokens | drop: skip longer examples
    system_prompt: str = ""  # added when a record has no system message
    chat_template: str = ""  # a jinja chat template; default: the tokenizer's own
    validation_fraction: float = 0.1  # of each dataset without its own validation file
    mixture_size: int = 0  # examples per epoch drawn from the weighted mixture; 0: all examples once

    def __post_init__(self) -> None:
        if self.train_on not in TRAIN_ON:
            raise ValueError(f"train_on must be one of {TRAIN_ON}, got {self.train_on!r}")
        if self.truncation not in ("right", "drop"):
            raise ValueError(f"truncation must be 'right' or 'drop', got {self.truncation!r}")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError("validation_fraction must be in [0, 1)")
        check_configured_template(self.chat_template)
        if self.seq_len < 8 or self.mixture_size < 0:
            raise ValueError(f"seq_len must be >= 8 and mixture_size >= 0, got {self.seq_len} and {self.mixture_size}")


@dataclass
class SFTConfig(PluginConfig):
    model: ModelConfig = field(default_factory=ModelConfig)
    tokenizer: str = ""  # HF tokenizer folder; default: model.from_pretrained
    data: SFTData = field(default_factory=SFTData)
    lora: LoraSettings = field(default_factory=LoraSettings)
    samples: SampleConfig = field(default_factory=lambda: SampleConfig(count=1, max_new_tokens=32))

    def __post_init__(self) -> None:
        if not self.data.datasets:
            raise ValueError("data.datasets: give at least one dataset")
        check_seq_len(self.model, self.data.seq_len)


# ---------------------------------------------------------------- records -> messages


def _fill(template: str, rec: dict[str, Any]) -> str:
    # {field} substitution only: str.format would also evaluate attribute and index lookups.
    return re.sub(r"\{(\w+)\}", lambda m: str(rec.get(m.group(1), "")), template).strip()


def to_messages(rec: dict[str, Any], ds: SFTDataset, system_prompt: str = "") -> list[dict[str, Any]]:
    """A record as [{role, content, train}] in our role vocabulary."""
    fmt = ds.format
    if fmt == "auto":
        fmt = "messages" if ds.messages_key in rec else "prompt_response"
    msgs: list[dict[str, Any]] = []
    if fmt == "messages":
        raw = rec.get(ds.messages_key)
        if not isinstance(raw, list) or not raw:
            raise SFTDataError(f"'{ds.messages_key}' must be a non-empty list of messages")
        for i, m in enumerate(raw):
            if not isinstance(m, dict) or ds.role_key not in m or ds.content_key not in m:
                raise SFTDataError(f"message {i} needs '{ds.role_key}' and '{ds.content_key}'")
            role = ds.role_map.get(m[ds.role_key], m[ds.role_key])
            if role not in ROLES:
                raise SFTDataError(f"message {i}: role {m[ds.role_key]!r} is not one of {ROLES} "
                                   f"(map it with role_map)")
            content, train = m[ds.content_key], m.get("train", True)
            if not isinstance(content, str):  # str() made null the text "None", and trained on it
                hint = ("; a list of parts ([{\"type\": \"text\", \"text\": ...}]) is not read: join the parts' "
                        "text into one string" if isinstance(content, list) else "")
                raise SFTDataError(f"message {i}: '{ds.content_key}' is {json.dumps(content)[:60]}, "
                                   f"expected a string{hint}")
            if not isinstance(train, bool):  # bool("false") is True
                raise SFTDataError(f"message {i}: 'train' is {json.dumps(train)[:60]}, expected true or false")
            msgs.append({"role": role, "content": content, "train": train})
    else:
        prompt = _fill(ds.prompt_template, rec) if ds.prompt_template else rec.get(ds.prompt_key)
        response = rec.get(ds.response_key)
        if not isinstance(prompt, str) or not isinstance(response, str):
            raise SFTDataError(f"needs string fields '{ds.prompt_key}' and '{ds.response_key}' "
                               f"(or a messages list under '{ds.messages_key}')")
        if isinstance(rec.get(ds.system_key), str) and rec[ds.system_key]:
            msgs.append({"role": "system", "content": rec[ds.system_key], "train": False})
        msgs += [{"role": "user", "content": prompt, "train": False},
                 {"role": "assistant", "content": response, "train": True}]
    if system_prompt and msgs[0]["role"] != "system":
        msgs.insert(0, {"role": "system", "content": system_prompt, "train": False})
    if not any(m["role"] == "assistant" for m in msgs):
        raise SFTDataError("has no assistant message: nothing to train on")
    if msgs[0]["role"] == "assistant":  # a reply needs what it answers (chat templates refuse an empty prompt)
        raise SFTDataError("opens with an assistant message: a conversation starts with a user (or system) message")
    return msgs


def with_few_shot(msgs: list[dict[str, Any]], exemplars: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Exemplar exchanges inserted after the system message; their replies are context, not targets."""
    head = [m for m in msgs[:1] if m["role"] == "system"]
    shots = [{**m, "train": False} for ex in exemplars for m in ex if m["role"] != "system"]
    return head + shots + msgs[len(head):]


def read_jsonl(path: Path, limit: int = 0) -> list[tuple[int, dict[str, Any]]]:
    """(line number, record) pairs; a line that is not a JSON object is an error naming it."""
    out = []
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:  # said "'utf-8' codec can't decode ..." without the file
                raise SFTDataError(f"{path}:{n}: not UTF-8 text (byte {exc.start}: {raw[exc.start:exc.start + 1]!r})"
                                   ) from exc
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SFTDataError(f"{path}:{n}: not valid JSON: {exc}") from exc
            if not isinstance(rec, dict):
                raise SFTDataError(f"{path}:{n}: expected a JSON object, got {type(rec).__name__}")
            out.append((n, rec))
            if limit and len(out) >= limit:
                break
    return out


# ---------------------------------------------------------------- messages -> tokens + target mask


def truncate(ids: np.ndarray, mask: np.ndarray, seq_len: int, how: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Fit an example into seq_len tokens; None when it cannot be used (too long with ``drop``, or
    no target left: the first token can never be a target, it has no predecessor)."""
    if ids.size > seq_len:
        if how == "drop":
            return None
        ids, mask = ids[:seq_len], mask[:seq_len]
    if not mask[1:].any():
        return None
    return ids, mask


# ---------------------------------------------------------------- datasets and the mixture


@dataclass
class Encoded:
    train: list[tuple[np.ndarray, np.ndarray]]
    validation: list[tuple[np.ndarray, np.ndarray]]
    prompts: list[list[dict[str, Any]]]  # validation conversations up to their last reply (for samples)
    stats: dict[str, Any]


def _shard_examples(prefix: Path, tokenizer: Any = None, tokenizer_path: Path | None = None
                    ) -> list[tuple[np.ndarray, np.ndarray]]:
    """The documents of a token shard set with a loss mask, checked against their sidecar first, then
    against the tokenizer in use (``tokenizer_path``, the sidecar's tokenizer_hash, as pretraining does)
    and its vocabulary (the model embeds exactly those ids)."""
    (lo, hi), = check_sets([prefix])
    ds = IndexedDataset(prefix)
    if tokenizer is not None and tokenizer_path is not None:
        same_tokenizer([(prefix, ds.meta)], tokenizer, tokenizer_path, key="tokenizer")
    vocab = len(tokenizer) if tokenizer is not None else None
    if vocab is not None and (lo < 0 or hi >= vocab):
        raise ShardError(ds.describe_token(vocab, "the tokenizer's vocabulary"))
    if ds.loss_mask is None:
        raise SFTDataError(f"{prefix}: token shards for SFT need a loss mask (.mask): "
                           "tokenize with loss_mask=assistant")
    return [(np.asarray(ds[i], dtype=np.int64), np.asarray(ds.mask(i), dtype=np.uint8)) for i in range(len(ds))]


def encode_dataset(k: int, ds: SFTDataset, cfg: SFTConfig, enc: ChatEncoder) -> Encoded:
    d, seed = cfg.data, cfg.train.seed
    path = cfg.path(ds.path)
    stats: dict[str, Any] = {"name": ds.name or path.stem, "records": 0, "truncated": 0, "dropped": 0}

    def fit(examples: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for ids, mask in examples:
            stats["truncated"] += int(ids.size > d.seq_len)
            ex = truncate(ids, mask, d.seq_len, d.truncation)
            if ex is None:
                stats["dropped"] += 1
            else:
                out.append(ex)
        return out

    if path.with_name(path.name + ".idx").is_file():  # pre-tokenized shards with a loss mask
        examples = _shard_examples(path, enc.tok, plugin_tokenizer_path(cfg))
        stats["records"] = len(examples)
        order = np.random.default_rng([seed, 6, k]).permutation(len(examples))
        n_val = int(len(examples) * d.validation_fraction)
        val = [examples[i] for i in order[:n_val]]
        train = [examples[i] for i in order[n_val:]]
        return Encoded(fit(train), fit(val), [], stats)

    def convs(p: Path, limit: int) -> list[list[dict[str, Any]]]:
        out = []
        for line, rec in read_jsonl(p, limit):
            try:
                out.append(to_messages(rec, ds, d.system_prompt))
            except SFTDataError as exc:
                raise SFTDataError(f"{p}:{line}: {exc}") from exc
        return out

    if path.is_dir():
        raise SFTDataError(f"SFT dataset {path} is a folder: give a JSONL file (or a token shard prefix)")
    if not path.is_file():
        raise FileNotFoundError(f"SFT dataset {path} does not exist")
    records = convs(path, ds.limit)
    stats["records"] = len(records)
    if ds.validation:
        train_c, val_c = records, convs(cfg.path(ds.validation), 0)
    else:
        order = np.random.default_rng([seed, 6, k]).permutation(len(records))
        n_val = int(len(records) * d.validation_fraction)
        val_c = [records[i] for i in sorted(order[:n_val])]
        train_c = [records[i] for i in sorted(order[n_val:])]
    if ds.few_shot:  # exemplars always come from the training records, never from validation
        pool = train_c

        def shots(exclude: int, key: int) -> list[list[dict[str, Any]]]:
            others = [j for j in range(len(pool)) if j != exclude]
            pick = np.random.default_rng([seed, 7, k, key]).choice(len(others), size=min(ds.few_shot, len(others)),
                                                                   replace=False)
            return [pool[others[j]] for j in pick]

        train_c = [with_few_shot(c, shots(i, i)) for i, c in enumerate(pool)]
        val_c = [with_few_shot(c, shots(-1, len(pool) + i)) for i, c in enumerate(val_c)]
    train = fit([enc.encode(c) for c in train_c])
    val = fit([enc.encode(c) for c in val_c])
    prompts = [c[:max(i for i, m in enumerate(c) if m["role"] == "assistant")] for c in val_c]
    return Encoded(train, val, prompts, stats)


def mixture(sizes: list[int], weights: list[float], total: int, seed: int) -> list[tuple[int, int]]:
    """(dataset, example) pairs: ``total`` draws in proportion to the weights (deterministic blending),
    each dataset's examples in a seeded order, a full pass before any repeats."""
    w = [wt if n > 0 else 0.0 for wt, n in zip(weights, sizes, strict=True)]
    if sum(w) <= 0:
        raise SFTDataError("no training examples left (every dataset is empty or has weight 0)")
    blended = BlendedDataset([range(n) for n in sizes], w, total, seed=seed)  # type: ignore[list-item]
    return list(zip(blended.dataset_index.tolist(), blended.sample_index.tolist(), strict=True))


# ---------------------------------------------------------------- the plugin


def _template(tokenizer: Any, cfg: SFTConfig) -> str | None:
    return chat_template(tokenizer, cfg.data.chat_template)


class SFT(TrainPlugin):
    """Supervised fine-tuning on chat/instruction data: loss on assistant tokens only, packing, mixtures, LoRA."""

    name: ClassVar[str] = "sft"
    config_class = SFTConfig
    resumable = ("samples.",)

    def build(self, config: SFTConfig, runtime: Runtime) -> SFTTask:
        d, t = config.data, config.train
        base = Path(config.base_dir)
        tokenizer = plugin_tokenizer(config)
        encoder = ChatEncoder(tokenizer, _template(tokenizer, config), d.train_on)
        parts = [encode_dataset(k, ds, config, encoder) for k, ds in enumerate(d.datasets)]
        sizes = [len(p.train) for p in parts]
        if not any(sizes) and any(p.stats["dropped"] for p in parts):  # not "every dataset is empty"
            counts = "; ".join(f"{p.stats['name']}: {p.stats['dropped']:,} of {p.stats['records']:,} records dropped, "
                               f"{p.stats['truncated']:,} longer than seq_len" for p in parts)
            how = ("cut to seq_len, none kept a reply token" if d.truncation == "right"
                   else "longer than seq_len, skipped (truncation: drop)")
            raise SFTDataError(f"no training examples left: every example was dropped ({how}; {counts}): raise "
                               f"data.seq_len ({d.seq_len}) or shorten the conversations (few_shot adds exemplars)")
        picks = mixture(sizes, [ds.weight for ds in d.datasets], d.mixture_size or sum(sizes), t.seed)
        train_ex = [parts[k].train[i] for k, i in picks]
        val_ex = [ex for p in parts for ex in p.validation]
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        train = PackedExamples(train_ex, d.seq_len, pad, packing=d.packing)
        val = PackedExamples(val_ex, d.seq_len, pad, packing=d.packing) if val_ex else None
        model = build_model(config.model, "causal", len(tokenizer), config.model.max_positions or d.seq_len,
                            SpecialIds(eos=tokenizer.eos_token_id, pad=pad), base)
        stops = stop_ids(tokenizer)
        if stops and getattr(model, "generation_config", None) is not None:
            model.generation_config.eos_token_id = stops  # generate() ends a reply at its end-of-turn marker
        if config.lora.enabled:
            model = apply_lora(model, config.lora)
        names = [p.stats["name"] for p in parts]
        stats = {"datasets": [p.stats | {"train": len(p.train), "validation": len(p.validation)} for p in parts],
                 "mixture": dict(zip(names, np.bincount([k for k, _ in picks], minlength=len(parts)).tolist(),
                                     strict=True)),
                 "train_rows": len(train), "train_target_tokens": sum(int(m[1:].sum()) for _, m in train_ex),
                 "row_fill": sum(len(x) for x, _ in train_ex) / max(1, len(train) * d.seq_len)}
        prompts = [encoder.render(conv, generation_prompt=True)
                   for conv in [c for part in parts for c in part.prompts][:config.samples.count]]
        return SFTTask(model, train, val, tokenizer=tokenizer, pad_id=pad, stats=stats, prompts=prompts,
                       max_new_tokens=config.samples.max_new_tokens, stop_ids=stops)
