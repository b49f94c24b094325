"""The one data layer from token shards (or tokenized examples) to batches on the device.

A row is built in two parts. A dataset cuts a *window* of ``seq_len + 1`` tokens, with for each
token its document (index within the window, -1 for padding), its position within that document and
its loss mask:

* ``PackedDataset``: the documents of one or more ``.bin/.idx`` shard sets concatenated (in a seeded
  document order) into one stream, cut into windows that overlap by one token (Megatron's GPTDataset
  layout: sample j covers stream tokens ``[j*S, j*S + S]``); a document may run across windows.
* ``PackedExamples``: whole tokenized examples (SFT conversations) packed into windows, never split
  (best-fit decreasing), the rest padding.

A *row function* (the task's labels, ``corpus.plugins.tasks``) then turns the window into tensors;
the default ``causal_row`` gives ``input_ids``, ``labels`` (the next token; -100 where it belongs to
another document, is padding or has loss mask 0), ``position_ids`` (restarting at every document, so
HF decoders attend within each document) and ``document_ids``. Rows are keyed by ``(epoch, index)``
so a random row function (MLM masks, T5 spans) is seeded by both, in whichever process reads it.

``TrainLoader`` drives a ``torch.utils.data.DataLoader`` with a batch sampler over
``ResumableSampler`` (seeded order per epoch, strided over DDP ranks, exact resume position) and
``collate``; ``eval_loader`` gives this process's share of the validation rows in order.

Before anything is read, every shard set is checked against its sidecar (``corpus.shards.check_content``:
sizes, sha256 and the token id range, one streaming pass over each ``.bin``, logged because a multi-GB
set takes seconds); ``check_vocab`` then refuses ids the model cannot embed, naming shard and document.
"""

from __future__ import annotations

import bisect
import functools
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset, Sampler

from corpus.shards import IndexedDataset, ShardError, blend_indices, check_content, epoch_permuted, paths
from corpus.units import plural
from corpus.work import die_with_parent

IGNORE_INDEX = -100
log = logging.getLogger("corpusforge.train")

Key = int | tuple[int, int]  # a row index, or (epoch, index) as the loaders ask for rows
Row = dict[str, torch.Tensor]


def split_key(key: Key) -> tuple[int, int]:
    return (int(key[0]), int(key[1])) if isinstance(key, tuple) else (0, int(key))


def check_sets(prefixes: Sequence[str | Path]) -> list[tuple[int, int]]:
    """``check_content`` of each shard set, timed and logged: (smallest id, largest id) per set."""
    size = sum(f.stat().st_size for p in prefixes for k, f in paths(p).items() if k != "json" and f.exists())
    log.info("checking %s, %.2f GB: sizes, sha256 and token ids against the sidecars (one read of each file)",
             plural(len(prefixes), "token shard set"), size / 1e9)
    t0 = time.perf_counter()
    ranges = [check_content(p) for p in prefixes]
    log.info("token shards intact (%.1f s)", time.perf_counter() - t0)
    return ranges


# ---------------------------------------------------------------- windows and rows


@dataclass
class Window:
    """``seq_len + 1`` tokens with, per token, its document in the window (-1: padding), its position
    in that document and its loss mask (0 on padding)."""

    tokens: np.ndarray
    doc: np.ndarray
    pos: np.ndarray
    mask: np.ndarray


RowFn = Callable[[Window, int, int], Row]  # (window, epoch, index) -> tensors


def causal_row(w: Window, epoch: int = 0, index: int = 0) -> Row:
    """Next-token targets: a target is trained only inside the input's own document, on a real token
    with loss mask 1 (so never across a document boundary, never on padding or an SFT prompt)."""
    tokens, doc, mask = torch.from_numpy(w.tokens), torch.from_numpy(w.doc), torch.from_numpy(w.mask)
    labels = tokens[1:].clone()
    labels[(doc[1:] != doc[:-1]) | (mask[1:] == 0)] = IGNORE_INDEX
    return {"input_ids": tokens[:-1], "labels": labels, "position_ids": torch.from_numpy(w.pos[:-1]),
            "document_ids": doc[:-1]}


class PackedDataset(Dataset):
    """Windows packed across documents from memory-mapped shard sets.

    prefixes: one shard-set prefix or several (their documents form one stream).
    seq_len: tokens per row (each window reads seq_len + 1 tokens: inputs and shifted labels).
    seed / shuffle_documents: the document order of the stream (a seeded permutation, or stored order).
    drop_last: drop the final incomplete window (else it is padded with ``pad_id``).
    pad_id: padding id (default: the sidecar's ``<|pad|>`` id, else its EOD id, else 0).
    use_loss_mask: honour the sets' ``.mask`` files when present.
    document_mask: positions restart and targets stop at every document (else one plain stream).
    check: check every set against its sidecar first (``check_sets``); ShardError names a bad file.
    row: the row function (default ``causal_row``).
    """

    def __init__(self, prefixes: str | Path | Sequence[str | Path], seq_len: int, *, seed: int = 0,
                 shuffle_documents: bool = True, drop_last: bool = True, pad_id: int | None = None,
                 use_loss_mask: bool = True, document_mask: bool = True, check: bool = True,
                 row: RowFn = causal_row):
        if seq_len < 1:
            raise ValueError("seq_len must be at least 1")
        plist = [prefixes] if isinstance(prefixes, str | Path) else list(prefixes)
        self.prefixes = [Path(p) for p in plist]
        self.token_ranges = check_sets(plist) if check else None
        self.sets = [IndexedDataset(p) for p in plist]
        self.seq_len, self.document_mask, self.row = seq_len, document_mask, row
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
        specials = self.meta.get("special_token_ids", {})
        self.pad_id = pad_id if pad_id is not None else specials.get("<|pad|>", self.meta.get("eod_id", 0))

    @property
    def meta(self) -> dict[str, Any]:
        """The first set's sidecar (tokenizer, special ids, EOD id)."""
        return self.sets[0].meta if self.sets else {}

    def __len__(self) -> int:
        return self._n

    def documents(self) -> Iterator[np.ndarray]:
        """The documents in stored order (for sample prompts)."""
        for s in self.sets:
            yield from s

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

    def window(self, j: int) -> Window:
        """The S+1 stream tokens of row j."""
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
        if not self.document_mask:  # one plain stream: targets cross documents, positions run on
            doc = np.where(doc >= 0, 0, -1)
            pos = np.arange(size)
        return Window(tokens, doc, pos, mask)

    def __getitem__(self, key: Key) -> Row:
        epoch, j = split_key(key)
        return self.row(self.window(j), epoch, j)


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


class PackedExamples(Dataset):
    """Whole tokenized examples (ids + loss mask) packed into rows of ``seq_len``, padded with ``pad_id``.

    Examples are never split across rows (``packing=False``: one example per row). With the causal
    row, the label of position t is token t+1 when that is a target of the same example."""

    def __init__(self, examples: Sequence[tuple[np.ndarray, np.ndarray]], seq_len: int, pad_id: int,
                 packing: bool = True, row: RowFn = causal_row):
        self.examples, self.seq_len, self.pad_id, self.row = examples, seq_len, pad_id, row
        lengths = [len(ids) for ids, _ in examples]
        if not packing and any(n > seq_len for n in lengths):
            raise ValueError("an example is longer than seq_len: truncate before packing")
        self.bins = best_fit_decreasing(lengths, seq_len) if packing else [[i] for i in range(len(examples))]

    def __len__(self) -> int:
        return len(self.bins)

    def window(self, i: int) -> Window:
        size = self.seq_len + 1
        tokens = np.full(size, self.pad_id, dtype=np.int64)
        doc = np.full(size, -1, dtype=np.int64)
        pos = np.zeros(size, dtype=np.int64)
        mask = np.zeros(size, dtype=np.uint8)
        off = 0
        for j, e in enumerate(self.bins[i]):
            ids, m = self.examples[e]
            n = len(ids)
            tokens[off:off + n], mask[off:off + n] = ids, m
            pos[off:off + n], doc[off:off + n] = np.arange(n), j
            off += n
        pos[off:] = np.arange(size - off)  # padding is a segment of its own: nothing real attends to it
        return Window(tokens, doc, pos, mask)

    def __getitem__(self, key: Key) -> Row:
        epoch, i = split_key(key)
        return self.row(self.window(i), epoch, i)


def block_causal_mask(document_ids: torch.Tensor) -> torch.Tensor:
    """Boolean attention mask from ``document_ids`` ([S] or [B, S]): True where query i may attend key j,
    i.e. j <= i and both tokens are in the same document. Shape [B, 1, S, S] (SDPA's ``attn_mask``
    convention: True takes part). Padding (-1) attends only to padding, so no row is empty."""
    ids = document_ids if document_ids.dim() == 2 else document_ids.unsqueeze(0)
    s = ids.shape[-1]
    causal = torch.ones(s, s, dtype=torch.bool, device=ids.device).tril()
    same = ids.unsqueeze(-1) == ids.unsqueeze(-2)
    return (same & causal).unsqueeze(1)


# ---------------------------------------------------------------- batches


# Padding of rows of unequal length, by key suffix (``chosen_labels`` pads like ``labels``); else the pad id.
PAD_VALUES = {"labels": IGNORE_INDEX, "document_ids": -1, "position_ids": 0, "attention_mask": 0}


def collate(rows: Sequence[Row], pad_id: int = 0) -> Row:
    """Stack rows into a batch; rows of unequal length (preference pairs, prompts) are right-padded."""
    out = {}
    for k in rows[0]:
        xs = [r[k] for r in rows]
        if all(x.shape == xs[0].shape for x in xs):
            out[k] = torch.stack(xs)
        else:
            fill = next((v for suffix, v in PAD_VALUES.items() if k.endswith(suffix)), pad_id)
            out[k] = pad_sequence(xs, batch_first=True, padding_value=fill)
    return out


def count_targets(batch: Row) -> int:
    return int((batch["labels"] != IGNORE_INDEX).sum())


# ---------------------------------------------------------------- order, loaders and mixtures


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

    def seek(self, epoch: int, consumed: int = 0) -> None:
        """The next iteration starts in ``epoch`` after ``consumed`` global samples."""
        self.epoch, self.consumed, self._epoch_start = epoch, consumed, consumed

    def state_dict(self) -> dict[str, Any]:
        """The resume position (what has been handed out; a prefetching DataLoader is ahead of its
        consumer, so ``TrainLoader`` keeps the consumer's own position instead)."""
        return {"seed": self.seed, "epoch": self.epoch, "consumed": min(self.consumed, self.num_samples),
                "num_samples": self.num_samples, "shuffle": self.shuffle}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["num_samples"] != self.num_samples or state["seed"] != self.seed or state["shuffle"] != self.shuffle:
            raise ValueError(f"sampler state is for {state['num_samples']} samples, seed {state['seed']}, "
                             f"shuffle {state['shuffle']}; this sampler has {self.num_samples}, {self.seed}, "
                             f"{self.shuffle}: the data or the seed changed")
        self.seek(int(state["epoch"]), int(state["consumed"]))


class _EpochBatches(Sampler[list[tuple[int, int]]]):
    """The DataLoader's batch sampler: the rest of the sampler's epoch as micro-batches of
    (epoch, index) keys, full global batches only."""

    def __init__(self, sampler: ResumableSampler, batch_size: int, per_epoch: int):
        self.sampler, self.batch_size, self.per_epoch = sampler, batch_size, per_epoch

    def __len__(self) -> int:
        return self.per_epoch - self.sampler.consumed // (self.batch_size * self.sampler.world_size)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, left = self.sampler.epoch, len(self)
        it = iter(self.sampler)
        for _ in range(left):
            yield [(epoch, next(it)) for _ in range(self.batch_size)]


def _worker_start(parent: int, worker_id: int) -> None:
    # A forked worker inherits the run folder's lock: orphaned by a SIGKILL it held it for seconds, and an
    # immediate rerun was refused naming the dead run's pid. It now dies with the training process.
    die_with_parent(parent)


class TrainLoader:
    """This process's micro-batches, epoch after epoch, from a ``DataLoader``; resumable exactly.

    The order is ``ResumableSampler``'s: a seeded permutation per epoch, process r of W taking every
    W-th row. A global batch (batch_size x W rows) is therefore the same set of rows whatever W is,
    so 2 processes make the same updates as 1 with twice the batch. An epoch ends when no full global
    batch is left. The position is the consumer's (global rows trained on this epoch), not the
    sampler's, which DataLoader workers run ahead of."""

    def __init__(self, dataset: Dataset, batch_size: int, *, seed: int = 0, shuffle: bool = True, rank: int = 0,
                 world: int = 1, workers: int = 0, collate_fn: Callable[[Sequence[Row]], Row] = collate,
                 pin_memory: bool = False):
        n = len(dataset)  # type: ignore[arg-type]
        self.global_batch = batch_size * world
        self.per_epoch = n // self.global_batch  # micro-batches per epoch on each process
        if self.per_epoch < 1:
            raise ValueError(f"the training data makes {n} rows, too few for one batch of {batch_size} rows x {world} "
                             "processes: lower train.batch_size, or give more data (packed token shards also make "
                             "more rows with a shorter data.seq_len)")
        self.sampler = ResumableSampler(n, seed=seed, shuffle=shuffle, rank=rank, world_size=world)
        # A private generator: creating a DataLoader iterator draws a seed, which must not move the
        # global torch RNG (dropout), or a resumed run would differ from an uninterrupted one.
        self.loader = DataLoader(dataset, batch_sampler=_EpochBatches(self.sampler, batch_size, self.per_epoch),
                                 collate_fn=collate_fn, num_workers=workers, pin_memory=pin_memory,
                                 generator=torch.Generator().manual_seed(seed),
                                 worker_init_fn=functools.partial(_worker_start, os.getpid()) if workers else None)
        self.epoch, self.consumed = 0, 0
        self._it: Iterator[Row] | None = None

    def __iter__(self) -> Iterator[Row]:
        return self

    def __next__(self) -> Row:
        if self.consumed >= self.per_epoch * self.global_batch:
            self.epoch, self.consumed, self._it = self.epoch + 1, 0, None
        if self._it is None:
            self.sampler.seek(self.epoch, self.consumed)
            self._it = iter(self.loader)
        batch = next(self._it)
        self.consumed += self.global_batch
        return batch

    @property
    def epochs_done(self) -> float:
        return self.epoch + self.consumed / (self.per_epoch * self.global_batch)

    def state_dict(self) -> dict[str, Any]:
        return {**self.sampler.state_dict(), "epoch": self.epoch, "consumed": self.consumed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state)
        self.epoch, self.consumed, self._it = int(state["epoch"]), int(state["consumed"]), None


def eval_loader(dataset: Dataset, batch_size: int, *, rank: int = 0, world: int = 1, limit: int = 0,
                collate_fn: Callable[[Sequence[Row]], Row] = collate) -> Iterable[Row]:
    """This process's share of the first ``limit`` global batches (all rows when 0), in order."""
    n, g = len(dataset), batch_size * world  # type: ignore[arg-type]
    total = -(-n // g) if limit <= 0 else min(limit, -(-n // g))
    starts = (k * g + rank * batch_size for k in range(total))
    keys = [[(0, i) for i in range(lo, min(lo + batch_size, n))] for lo in starts]
    return DataLoader(dataset, batch_sampler=[k for k in keys if k], collate_fn=collate_fn,
                      generator=torch.Generator())


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
