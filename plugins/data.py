"""Training data over tokenized shards: packed fixed-length sequences with document masking.

``PackedDataset`` concatenates the documents of one or more ``.bin/.idx`` shard sets (in a seeded
document order) into one token stream and cuts it into samples of ``seq_len + 1`` tokens that
overlap by one (Megatron's GPTDataset layout): sample j covers stream tokens ``[j*S, j*S + S]``,
``input_ids`` are the first S, ``labels`` the last S. Each sample also carries

* ``position_ids``: 0 at the sample start and at every document start within it;
* ``document_ids``: the index (within the sample) of the document each token belongs to, -1 for
  padding; ``block_causal_mask(document_ids)`` turns it into the [.., S, S] attention mask that keeps
  tokens from attending across documents;
* ``labels`` = -100 where the target belongs to another document than the input (the EOD -> next
  document step, which the model cannot predict when it cannot see across documents), is padding,
  or has loss mask 0 (SFT prompts).

Before anything is read, every shard set is checked against its sidecar (``corpus.shards.check_content``:
sizes, sha256 and the token id range, one streaming pass over each ``.bin``, logged because a multi-GB
set takes seconds); ``check_vocab`` then refuses ids the model cannot embed, naming shard and document.

``ResumableSampler`` gives the seeded sample order, strided across DDP ranks (equal-length,
disjoint), with an exact resume position that survives a change of world size.
``BlendedDataset`` mixes several datasets Megatron-style (``corpus.shards.blend_indices``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from corpus.shards import IndexedDataset, ShardError, blend_indices, check_content, epoch_permuted, paths

IGNORE_INDEX = -100
log = logging.getLogger("corpusforge.train")


def check_sets(prefixes: Sequence[str | Path]) -> list[tuple[int, int]]:
    """``check_content`` of each shard set, timed and logged: (smallest id, largest id) per set."""
    size = sum(f.stat().st_size for p in prefixes for k, f in paths(p).items() if k != "json" and f.exists())
    log.info("checking %d token shard set(s), %.2f GB: sizes, sha256 and token ids against the sidecars "
             "(one read of each file)", len(prefixes), size / 1e9)
    t0 = time.perf_counter()
    ranges = [check_content(p) for p in prefixes]
    log.info("token shards intact (%.1f s)", time.perf_counter() - t0)
    return ranges


class PackedDataset(Dataset):
    """Fixed-length samples packed across documents from memory-mapped shard sets.

    prefixes: one shard-set prefix or several (their documents form one stream).
    seq_len: tokens per sample (each sample reads seq_len + 1 tokens: inputs and shifted labels).
    seed / shuffle_documents: the document order of the stream (a seeded permutation, or stored order).
    drop_last: drop the final incomplete sample (else it is padded with ``pad_id``).
    pad_id: padding id (default: the sidecar's ``<|pad|>`` id, else its EOD id, else 0).
    use_loss_mask: honour the sets' ``.mask`` files when present.
    check: check every set against its sidecar first (``check_sets``); ShardError names a bad file.
    """

    def __init__(self, prefixes: str | Path | Sequence[str | Path], seq_len: int, *, seed: int = 0,
                 shuffle_documents: bool = True, drop_last: bool = True, pad_id: int | None = None,
                 use_loss_mask: bool = True, check: bool = True):
        if seq_len < 1:
            raise ValueError("seq_len must be at least 1")
        plist = [prefixes] if isinstance(prefixes, str | Path) else list(prefixes)
        self.token_ranges = check_sets(plist) if check else None
        self.sets = [IndexedDataset(p) for p in plist]
        self.seq_len = seq_len
        self.use_loss_mask = use_loss_mask and any(s.loss_mask is not None for s in self.sets)
        set_of = np.concatenate([np.full(len(s), i, dtype=np.int32) for i, s in enumerate(self.sets)] or
                                [np.zeros(0, np.int32)])
        starts = np.concatenate([s.pointers // s.dtype.itemsize for s in self.sets] or [np.zeros(0, np.int64)])
        lengths = np.concatenate([s.lengths.astype(np.int64) for s in self.sets] or [np.zeros(0, np.int64)])
        order = (np.random.default_rng([seed, 0]).permutation(lengths.size) if shuffle_documents
                 else np.arange(lengths.size))
        self._set, self._start, self._len = set_of[order], starts[order], lengths[order]
        self._ends = np.cumsum(self._len)  # stream end offset of each document
        total = int(self._ends[-1]) if self._ends.size else 0
        self.total_tokens = total
        span = max(total - 1, 0)  # the last token is only ever a label
        self._n = span // seq_len if drop_last else -(-span // seq_len)
        meta = self.sets[0].meta if self.sets else {}
        specials = meta.get("special_token_ids", {})
        self.pad_id = pad_id if pad_id is not None else specials.get("<|pad|>", meta.get("eod_id", 0))

    def __len__(self) -> int:
        return self._n

    def check_vocab(self, limit: int, what: str = "the model's vocabulary", hint: str = "") -> None:
        """Raise ShardError naming the shard and the document of the first id outside [0, limit)."""
        for i, ds in enumerate(self.sets):
            if self.token_ranges is not None:
                lo, hi = self.token_ranges[i]
                bad = lo < 0 or hi >= limit
            else:
                bad = ds.find_token(limit) is not None
            if bad:
                raise ShardError(ds.describe_token(limit, what, hint))

    def window(self, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(tokens, local document index, position, loss mask) of the S+1 stream tokens of sample j."""
        if not 0 <= j < self._n:
            raise IndexError(f"sample {j} out of range ({self._n} samples)")
        size = self.seq_len + 1
        tokens = np.full(size, self.pad_id, dtype=np.int64)
        doc = np.full(size, -1, dtype=np.int64)
        pos = np.zeros(size, dtype=np.int64)
        mask = np.ones(size, dtype=np.uint8)
        start = j * self.seq_len
        d = int(np.searchsorted(self._ends, start, side="right"))
        filled, local = 0, 0
        while filled < size and d < self._len.size:
            doc_begin = int(self._ends[d] - self._len[d])
            off = start + filled - doc_begin  # offset inside document d
            take = min(int(self._len[d]) - off, size - filled)
            if take <= 0:  # an empty document (only possible without EOD): nothing to place
                d += 1
                continue
            ds = self.sets[self._set[d]]
            src = int(self._start[d]) + off
            sl = slice(filled, filled + take)
            tokens[sl] = ds.tokens[src:src + take]
            doc[sl] = local
            pos[sl] = np.arange(take)
            if self.use_loss_mask and ds.loss_mask is not None:
                mask[sl] = ds.loss_mask[src:src + take]
            filled += take
            local += 1
            d += 1
        mask[doc < 0] = 0
        return tokens, doc, pos, mask

    def __getitem__(self, j: int) -> dict[str, torch.Tensor]:
        tokens, doc, pos, mask = self.window(int(j))
        labels = tokens[1:].copy()
        # A target is trained only inside the input's own document, on a real token, with mask 1.
        labels[(doc[1:] != doc[:-1]) | (mask[1:] == 0)] = IGNORE_INDEX
        return {
            "input_ids": torch.from_numpy(tokens[:-1].copy()),
            "labels": torch.from_numpy(labels),
            "position_ids": torch.from_numpy(pos[:-1].copy()),
            "document_ids": torch.from_numpy(doc[:-1].copy()),
        }


def block_causal_mask(document_ids: torch.Tensor) -> torch.Tensor:
    """Boolean attention mask from ``document_ids`` ([S] or [B, S]): True where query i may attend key j,
    i.e. j <= i and both tokens are in the same document. Shape [B, 1, S, S] (SDPA's ``attn_mask``
    convention: True takes part). Padding (-1) attends only to padding, so no row is empty."""
    ids = document_ids if document_ids.dim() == 2 else document_ids.unsqueeze(0)
    s = ids.shape[-1]
    causal = torch.ones(s, s, dtype=torch.bool, device=ids.device).tril()
    same = ids.unsqueeze(-1) == ids.unsqueeze(-2)
    return (same & causal).unsqueeze(1)


class ResumableSampler(Sampler[int]):
    """Seeded sample order for one rank, with an exact resume position.

    Each epoch is a permutation of ``range(num_samples)`` seeded by (seed, epoch) — identity when
    ``shuffle`` is False. Rank r takes global positions ``consumed + r, consumed + r + W, ...``:
    ranks get disjoint, equal-length slices (the remainder is dropped, or with ``drop_last=False``
    wrapped from the start like ``DistributedSampler``). ``consumed`` counts global samples handed
    out this epoch, so a state saved at world size W resumes exactly at world size W'.
    """

    def __init__(self, num_samples: int, *, seed: int = 0, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1, drop_last: bool = True):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.num_samples, self.seed, self.shuffle = num_samples, seed, shuffle
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.epoch = 0
        self.consumed = 0  # global samples consumed this epoch
        self._epoch_start = 0

    def order(self, epoch: int | None = None) -> np.ndarray:
        e = self.epoch if epoch is None else epoch
        if not self.shuffle:
            return np.arange(self.num_samples)
        return np.random.default_rng([self.seed, e, 1]).permutation(self.num_samples)

    def _remaining_per_rank(self) -> int:
        left = max(self.num_samples - self.consumed, 0)
        return left // self.world_size if self.drop_last else -(-left // self.world_size)

    def __len__(self) -> int:
        return self._remaining_per_rank()

    def __iter__(self) -> Iterator[int]:
        order = self.order()
        per_rank = self._remaining_per_rank()
        base = self._epoch_start = self.consumed
        for i in range(per_rank):
            g = base + self.rank + i * self.world_size
            # Count before yielding: once the consumer holds k indices, the state says k consumed.
            self.consumed = base + (i + 1) * self.world_size
            yield int(order[g % self.num_samples])
        self.epoch += 1
        self.consumed = self._epoch_start = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.consumed, self._epoch_start = epoch, 0, 0

    def state_dict(self, seen_per_rank: int | None = None) -> dict[str, Any]:
        """The resume position. With DataLoader workers prefetching ahead of the training loop, pass
        the samples this rank actually trained on since the iteration began (``seen_per_rank``)."""
        consumed = self.consumed if seen_per_rank is None else self._epoch_start + seen_per_rank * self.world_size
        return {"seed": self.seed, "epoch": self.epoch, "consumed": min(consumed, self.num_samples),
                "num_samples": self.num_samples, "shuffle": self.shuffle}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["num_samples"] != self.num_samples or state["seed"] != self.seed or state["shuffle"] != self.shuffle:
            raise ValueError(f"sampler state is for {state['num_samples']} samples, seed {state['seed']}, "
                             f"shuffle {state['shuffle']}; this sampler has {self.num_samples}, {self.seed}, "
                             f"{self.shuffle}: the data or the seed changed")
        self.epoch, self.consumed = int(state["epoch"]), int(state["consumed"])
        self._epoch_start = self.consumed


class BlendedDataset(Dataset):
    """A weighted mixture of datasets, Megatron-style: sample k comes from the dataset furthest below
    its target share; within a dataset, samples are visited in a seeded order, epoch after epoch."""

    def __init__(self, datasets: Sequence[Dataset], weights: Sequence[float], num_samples: int, seed: int = 0):
        if len(datasets) != len(weights):
            raise ValueError("one weight per dataset")
        self.datasets = list(datasets)
        self.dataset_index, counts = blend_indices(weights, num_samples)
        self.sample_index = np.empty_like(counts)
        for d, ds in enumerate(self.datasets):
            sel = self.dataset_index == d
            if sel.any():
                if len(ds) == 0:  # type: ignore[arg-type]
                    raise ValueError(f"dataset {d} has a positive weight but no samples")
                self.sample_index[sel] = epoch_permuted(counts[sel], len(ds), seed, d)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return int(self.dataset_index.size)

    def __getitem__(self, i: int) -> Any:
        return self.datasets[int(self.dataset_index[i])][int(self.sample_index[i])]
