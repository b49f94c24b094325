"""Rows and batches for the trainer, on top of the shared data layer (``plugins/data.py``).

* ``ShardRows``: pretraining rows from token shards, through ``corpus.plugins.data.PackedDataset``
  (documents concatenated in a seeded order, cut into ``seq_len`` rows, positions restarting and no
  target crossing a document boundary);
* ``PackedExamples``: whole tokenized examples (SFT) packed into rows, never split;
* ``BatchIterator``: micro-batches in the order of ``corpus.plugins.data.ResumableSampler`` (seeded per
  epoch, strided over processes, exact resume).

A *row source* gives ``len(source)`` rows and ``source.row(epoch, i)``: a dict of equal-length
int64 arrays

* ``input_ids``
* ``labels``: the target of each position (the *next* token, already shifted), ``-100`` = no loss;
* ``position_ids``: restart at 0 at every document start inside the row, which is what makes HF
  decoders mask attention per document (block-causal) when no attention mask is passed;
* ``document_ids``: 0, 1, ... per document segment inside the row, ``-1`` for padding.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from corpus.plugins.data import IGNORE_INDEX, PackedDataset, ResumableSampler

IGNORE = IGNORE_INDEX


class RowSource(Protocol):
    def __len__(self) -> int: ...

    def row(self, epoch: int, i: int) -> dict[str, np.ndarray]: ...


def segment_positions(doc: np.ndarray) -> np.ndarray:
    """Position of each element within its run of equal values: [5,5,7,7,7] -> [0,1,0,1,2]."""
    idx = np.arange(doc.size)
    starts = np.ones(doc.size, dtype=bool)
    starts[1:] = doc[1:] != doc[:-1]
    return idx - np.maximum.accumulate(np.where(starts, idx, 0))


class ShardRows:
    """Pretraining rows from token shard sets: ``corpus.plugins.data.PackedDataset`` seen as a row source.

    With ``document_mask`` (the default) rows are the dataset's samples as they are. Without it,
    positions run 0..S-1 over the whole row and targets cross document boundaries (plain packing)."""

    def __init__(self, prefixes: Sequence[str | Path], seq_len: int, *, seed: int = 0, shuffle: bool = True,
                 document_mask: bool = True):
        if not prefixes:
            raise ValueError("no token shard sets given")
        # PackedDataset checks each set against its sidecar (sizes, sha256, id range) before the first step.
        self.ds = PackedDataset(list(prefixes), seq_len, seed=seed, shuffle_documents=shuffle, use_loss_mask=False)
        self.seq_len, self.document_mask = seq_len, document_mask
        if len(self.ds) < 1:
            raise ValueError(f"{self.ds.total_tokens} tokens in {[str(p) for p in prefixes]} cannot fill one row "
                             f"of seq_len {seq_len}")

    @property
    def meta(self) -> dict:
        return self.ds.sets[0].meta

    def __len__(self) -> int:
        return len(self.ds)

    def documents(self) -> Iterator[np.ndarray]:
        for s in self.ds.sets:
            yield from s

    def window(self, epoch: int, i: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(tokens, document index within the row) of the first ``size`` (<= seq_len + 1) tokens of row i."""
        tokens, doc, _, _ = self.ds.window(i)
        return tokens[:size], doc[:size]

    def row(self, epoch: int, i: int) -> dict[str, np.ndarray]:
        if self.document_mask:
            return {k: v.numpy() for k, v in self.ds[i].items()}
        tokens, doc, _, _ = self.ds.window(i)
        labels = np.where(doc[1:] >= 0, tokens[1:], IGNORE)
        return {"input_ids": tokens[:-1], "labels": labels, "position_ids": np.arange(self.seq_len),
                "document_ids": np.zeros(self.seq_len, dtype=np.int64)}


def best_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Pack items into bins of ``capacity``: longest first, each into the fullest bin it fits.
    Deterministic; an item is never split."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (room left, bin index), sorted
    for i in order:
        n = lengths[i]
        if n > capacity:
            raise ValueError(f"item {i} has {n} tokens, more than the row length {capacity}")
        j = bisect.bisect_left(free, (n, -1))
        if j < len(free):
            room, b = free.pop(j)
        else:
            room, b = capacity, len(bins)
            bins.append([])
        bins[b].append(i)
        bisect.insort(free, (room - n, b))
    return bins


class PackedExamples:
    """Whole tokenized examples (ids + target mask) packed into rows of ``seq_len``, padded.

    Examples are never split across rows (``packing=False``: one example per row). The label of
    position t is token t+1 when token t+1 is a target of the same example."""

    def __init__(self, examples: Sequence[tuple[np.ndarray, np.ndarray]], seq_len: int, pad_id: int,
                 packing: bool = True):
        self.examples, self.seq_len, self.pad_id = examples, seq_len, pad_id
        lengths = [len(ids) for ids, _ in examples]
        self.bins = best_fit_decreasing(lengths, seq_len) if packing else [[i] for i in range(len(examples))]
        if packing is False and any(n > seq_len for n in lengths):
            raise ValueError("an example is longer than seq_len: truncate before packing")

    def __len__(self) -> int:
        return len(self.bins)

    def row(self, epoch: int, i: int) -> dict[str, np.ndarray]:
        S = self.seq_len
        ids = np.full(S, self.pad_id, dtype=np.int64)
        labels = np.full(S, IGNORE, dtype=np.int64)
        pos = np.zeros(S, dtype=np.int64)
        doc = np.full(S, -1, dtype=np.int64)
        off = 0
        for j, e in enumerate(self.bins[i]):
            x, m = self.examples[e]
            n = len(x)
            ids[off:off + n] = x
            labels[off:off + n - 1] = np.where(np.asarray(m[1:]) > 0, x[1:], IGNORE)
            pos[off:off + n] = np.arange(n)
            doc[off:off + n] = j
            off += n
        pos[off:] = np.arange(S - off)  # padding is a segment of its own: nothing real attends to it
        return {"input_ids": ids, "labels": labels, "position_ids": pos, "document_ids": doc}


def collate(rows: Sequence[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    batch = {k: torch.from_numpy(np.stack([r[k] for r in rows])) for k in rows[0]}
    return batch


def count_targets(batch: dict[str, torch.Tensor]) -> int:
    return int((batch["labels"] != IGNORE).sum())


class BatchIterator:
    """Micro-batches of rows for this process, resumable.

    The order is ``corpus.plugins.data.ResumableSampler``'s: a seeded permutation per epoch, process r of W
    taking every W-th index. A global batch (batch_size x W rows) is therefore the same set of rows
    whatever W is, so a run on 2 processes makes the same updates as on 1 with twice the batch. An
    epoch ends when no full global batch is left; the state is the sampler's (epoch, consumed)."""

    def __init__(self, source: RowSource, batch_size: int, *, seed: int = 0, shuffle: bool = True,
                 rank: int = 0, world: int = 1):
        self.source, self.batch_size = source, batch_size
        self.global_batch = batch_size * world
        self.per_epoch = len(source) // self.global_batch
        if self.per_epoch < 1:
            raise ValueError(f"{len(source)} rows cannot fill one batch of {batch_size} rows x {world} processes")
        self.sampler = ResumableSampler(len(source), seed=seed, shuffle=shuffle, rank=rank, world_size=world)
        self._it: Iterator[int] | None = None

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        if self.sampler.consumed + self.global_batch > self.per_epoch * self.global_batch:
            self.sampler.set_epoch(self.sampler.epoch + 1)
            self._it = None
        if self._it is None:
            self._it = iter(self.sampler)
        idx = [next(self._it) for _ in range(self.batch_size)]
        return collate([self.source.row(self.sampler.epoch, i) for i in idx])

    @property
    def epochs_done(self) -> float:
        return self.sampler.epoch + self.sampler.consumed / (self.per_epoch * self.global_batch)

    def state_dict(self) -> dict[str, Any]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state)
        self._it = None


def eval_batches(source: RowSource, batch_size: int, *, rank: int = 0, world: int = 1,
                 limit: int = 0) -> Iterator[dict[str, torch.Tensor]]:
    """This process's share of the first ``limit`` global batches (all rows when 0), in order."""
    n = len(source)
    G = batch_size * world
    total = -(-n // G) if limit <= 0 else min(limit, -(-n // G))
    for g in range(total):
        lo = g * G + rank * batch_size
        idx = range(lo, min(lo + batch_size, n))
        if len(idx):
            yield collate([source.row(0, i) for i in idx])
