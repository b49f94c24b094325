"""PackedDataset: packing boundaries, position ids, document masks, loss masks, order, resume, DDP ranks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from corpus.plugins.data import (
    BlendedDataset,
    PackedDataset,
    ResumableSampler,
    TrainLoader,
    block_causal_mask,
    collate,
)
from corpus.shards import write_documents

EOD = 0
DOCS = [[10, 11, 12, EOD], [20, 21, EOD], [30, 31, 32, 33, 34, EOD]]  # stream of 13 tokens


@pytest.fixture
def prefix(tmp_path):
    write_documents(tmp_path / "s", DOCS, vocab_size=100, meta={"eod_id": EOD, "special_token_ids": {"<|pad|>": 1}})
    return tmp_path / "s"


def as_lists(sample: dict) -> dict:
    return {k: v.tolist() for k, v in sample.items()}


def test_packing_boundaries_positions_and_labels(prefix):
    ds = PackedDataset(prefix, seq_len=4, shuffle_documents=False)
    assert len(ds) == 3  # (13 - 1) // 4
    # Stream: 10 11 12 0 | 20 21 0 | 30 31 32 33 34 0; sample j reads stream[4j : 4j + 5].
    assert as_lists(ds[0]) == {"input_ids": [10, 11, 12, 0], "labels": [11, 12, 0, -100],
                               "position_ids": [0, 1, 2, 3], "document_ids": [0, 0, 0, 0]}
    assert as_lists(ds[1]) == {"input_ids": [20, 21, 0, 30], "labels": [21, 0, -100, 31],
                               "position_ids": [0, 1, 2, 0], "document_ids": [0, 0, 0, 1]}
    assert as_lists(ds[2]) == {"input_ids": [31, 32, 33, 34], "labels": [32, 33, 34, 0],
                               "position_ids": [0, 1, 2, 3], "document_ids": [0, 0, 0, 0]}
    with pytest.raises(IndexError):
        ds[3]


def test_padding_when_not_dropping_last(prefix):
    ds = PackedDataset(prefix, seq_len=5, shuffle_documents=False, drop_last=False)
    assert len(ds) == 3  # ceil(12 / 5)
    last = as_lists(ds[2])  # stream[10:16] = 33 34 0 + 3 pads
    assert last == {"input_ids": [33, 34, 0, 1, 1], "labels": [34, 0, -100, -100, -100],
                    "position_ids": [0, 1, 2, 0, 0], "document_ids": [0, 0, 0, -1, -1]}


def test_block_causal_mask_hand_computed(prefix):
    ds = PackedDataset(prefix, seq_len=4, shuffle_documents=False)
    mask = block_causal_mask(ds[1]["document_ids"])  # docs [0, 0, 0, 1]
    expected = torch.tensor([[1, 0, 0, 0],
                             [1, 1, 0, 0],
                             [1, 1, 1, 0],
                             [0, 0, 0, 1]], dtype=torch.bool)
    assert mask.shape == (1, 1, 4, 4) and torch.equal(mask[0, 0], expected)
    batch = torch.stack([ds[0]["document_ids"], ds[1]["document_ids"]])
    assert block_causal_mask(batch).shape == (2, 1, 4, 4)


def test_document_mask_isolates_documents_in_attention(tmp_path):
    """Packed attention with the block mask equals attending to each document alone."""
    rng = np.random.default_rng(0)
    docs = [rng.integers(2, 50, size=n).tolist() + [EOD] for n in (5, 3, 9, 2)]
    write_documents(tmp_path / "a", docs, vocab_size=50)
    ds = PackedDataset(tmp_path / "a", seq_len=12, shuffle_documents=False)
    torch.manual_seed(0)
    emb = torch.randn(50, 8)
    for j in range(len(ds)):
        s = ds[j]
        x = emb[s["input_ids"]][None, None]  # [1, 1, S, 8]
        out = torch.nn.functional.scaled_dot_product_attention(x, x, x, attn_mask=block_causal_mask(s["document_ids"]))
        for d in s["document_ids"].unique().tolist():
            sel = s["document_ids"] == d
            xd = x[:, :, sel]
            alone = torch.nn.functional.scaled_dot_product_attention(xd, xd, xd, is_causal=True)
            assert torch.allclose(out[:, :, sel], alone, atol=1e-6)


def test_stream_coverage_and_loss_mask(tmp_path):
    docs = [[5, 6, 7, EOD], [8, 9, EOD]]
    masks = [[0, 0, 1, 1], [0, 1, 1]]
    write_documents(tmp_path / "m", docs, vocab_size=100, masks=masks)
    ds = PackedDataset(tmp_path / "m", seq_len=3, shuffle_documents=False)
    assert as_lists(ds[0]) == {"input_ids": [5, 6, 7], "labels": [-100, 7, 0], "position_ids": [0, 1, 2],
                               "document_ids": [0, 0, 0]}
    assert as_lists(ds[1]) == {"input_ids": [0, 8, 9], "labels": [-100, 9, 0], "position_ids": [0, 0, 1],
                               "document_ids": [0, 1, 1]}
    plain = PackedDataset(tmp_path / "m", seq_len=3, shuffle_documents=False, use_loss_mask=False)
    assert plain[0]["labels"].tolist() == [6, 7, 0]
    # Every stream token is an input exactly once (the last only a label), across two sets too.
    both = PackedDataset([tmp_path / "m", tmp_path / "m"], seq_len=2, shuffle_documents=False)
    stream = [t for d in docs + docs for t in d]
    flat = [t for j in range(len(both)) for t in both[j]["input_ids"].tolist()]
    assert flat == stream[:len(flat)] and len(flat) == (len(stream) - 1) // 2 * 2


def test_document_order_deterministic_by_seed(tmp_path):
    rng = np.random.default_rng(1)
    docs = [rng.integers(2, 99, size=int(rng.integers(1, 20))).tolist() + [EOD] for _ in range(40)]
    write_documents(tmp_path / "d", docs, vocab_size=100)

    def tokens(seed: int) -> list[int]:
        ds = PackedDataset(tmp_path / "d", seq_len=16, seed=seed)
        return [t for j in range(len(ds)) for t in ds[j]["input_ids"].tolist()]

    assert tokens(3) == tokens(3) and tokens(3) != tokens(4)
    assert sorted(tokens(3)) != tokens(3)


def test_sampler_order_ranks_disjoint_equal_and_covering():
    n = 23
    s = ResumableSampler(n, seed=5)
    assert list(s) == list(ResumableSampler(n, seed=5)) and list(ResumableSampler(n, seed=6)) != list(
        ResumableSampler(n, seed=5))
    assert sorted(ResumableSampler(n, seed=5)) == list(range(n))
    for w in (2, 3, 4):
        slices = [list(ResumableSampler(n, seed=5, rank=r, world_size=w)) for r in range(w)]
        assert len({len(x) for x in slices}) == 1 and len(slices[0]) == n // w
        flat = [i for x in slices for i in x]
        assert len(set(flat)) == len(flat)  # disjoint
        order = ResumableSampler(n, seed=5).order().tolist()
        assert set(flat) == set(order[: n // w * w])  # covering (the remainder dropped)
        padded = [list(ResumableSampler(n, seed=5, rank=r, world_size=w, drop_last=False)) for r in range(w)]
        assert len({len(x) for x in padded}) == 1 and set(i for x in padded for i in x) == set(range(n))
    two_epochs = ResumableSampler(n, seed=5)
    assert list(two_epochs) != list(two_epochs)  # reshuffled per epoch


def test_resume_yields_exactly_the_remaining_samples(tmp_path):
    rng = np.random.default_rng(2)
    docs = [rng.integers(2, 99, size=int(rng.integers(1, 30))).tolist() + [EOD] for _ in range(60)]
    write_documents(tmp_path / "r", docs, vocab_size=100)
    ds = PackedDataset(tmp_path / "r", seq_len=8, seed=1)

    def batches(sampler: ResumableSampler, limit: int | None = None) -> list[list[int]]:
        out = []
        for b in DataLoader(ds, batch_size=3, sampler=sampler):
            out.append(b["input_ids"].flatten().tolist())
            if limit is not None and len(out) == limit:
                break
        return out

    full = batches(ResumableSampler(len(ds), seed=9))
    first = ResumableSampler(len(ds), seed=9)
    head = batches(first, limit=4)
    state = first.state_dict()
    assert state["consumed"] == 12
    resumed = ResumableSampler(len(ds), seed=9)
    resumed.load_state_dict(state)
    assert head + batches(resumed) == full
    with pytest.raises(ValueError, match="seed"):
        ResumableSampler(len(ds), seed=10).load_state_dict(state)

    # Resume on another world size: 2 ranks consumed 5 samples each, then 3 ranks take the rest.
    ranks = [ResumableSampler(len(ds), seed=9, rank=r, world_size=2) for r in range(2)]
    its = [iter(r) for r in ranks]
    seen = [next(it) for _ in range(5) for it in its]
    st = ranks[0].state_dict()
    assert st == ranks[1].state_dict() and st["consumed"] == 10
    rest = []
    for r in range(3):
        s = ResumableSampler(len(ds), seed=9, rank=r, world_size=3)
        s.load_state_dict(st)
        rest += list(s)
    order = ResumableSampler(len(ds), seed=9).order().tolist()
    assert sorted(seen) == sorted(order[:10]) and sorted(rest) == sorted(order[10:10 + (len(ds) - 10) // 3 * 3])


def tagged_row(w, epoch: int, index: int) -> dict:
    """A row function that shows which (epoch, row) it was asked for (module level: workers copy it)."""
    return {"input_ids": torch.from_numpy(w.tokens[:-1]), "key": torch.tensor([epoch, index])}


@pytest.mark.parametrize("workers", [0, 2])
def test_train_loader_resumes_exactly_across_epochs(tmp_path, workers: int):
    """Through a real DataLoader (with prefetching worker processes too): a loader stopped anywhere and
    restored from its state gives what an uninterrupted one gives, across epoch boundaries."""
    rng = np.random.default_rng(3)
    docs = [rng.integers(2, 99, size=int(rng.integers(1, 30))).tolist() + [EOD] for _ in range(40)]
    write_documents(tmp_path / "r", docs, vocab_size=100)
    ds = PackedDataset(tmp_path / "r", seq_len=8, seed=1, row=tagged_row)

    def take(loader: TrainLoader, n: int) -> list[list[int]]:
        return [next(loader)["key"].tolist() for _ in range(n)]

    first = TrainLoader(ds, 3, seed=9, workers=workers)
    assert isinstance(first.loader, DataLoader) and first.loader.num_workers == workers
    per_epoch = first.per_epoch
    straight = take(TrainLoader(ds, 3, seed=9, workers=workers), 2 * per_epoch + 3)
    head = take(first, per_epoch + 2)  # stopped inside the second epoch, the workers ahead of it
    state = first.state_dict()
    assert (state["epoch"], state["consumed"]) == (1, 6)
    again = TrainLoader(ds, 3, seed=9, workers=workers)
    again.load_state_dict(state)
    assert head + take(again, per_epoch + 1) == straight
    epochs = [[e for e, _ in b] for b in straight]
    assert epochs[0] == [0, 0, 0] and epochs[per_epoch] == [1, 1, 1]  # rows are asked for as (epoch, index)
    rows = [sorted(i for _, i in b) for b in straight]
    assert rows[:per_epoch] != rows[per_epoch:2 * per_epoch]  # reshuffled per epoch


def test_train_loader_too_small_for_one_batch_says_what_to_change(tmp_path):
    write_documents(tmp_path / "r", [[5, 6, 7, EOD]] * 5, vocab_size=100)
    ds = PackedDataset(tmp_path / "r", seq_len=8, seed=1)
    with pytest.raises(ValueError, match=rf"the training data makes {len(ds)} rows, too few for one batch of 4 rows "
                                         r"x 2 processes: lower train\.batch_size, or give more data"):
        TrainLoader(ds, 4, world=2)


def test_collate_stacks_rows_and_pads_unequal_ones():
    rows = [{"input_ids": torch.tensor([5, 6, 7]), "labels": torch.tensor([6, 7, -100])},
            {"input_ids": torch.tensor([8]), "labels": torch.tensor([-100])}]
    batch = collate(rows, pad_id=1)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 1, 1]]
    assert batch["labels"].tolist() == [[6, 7, -100], [-100, -100, -100]]
    same = collate([rows[0], rows[0]])
    assert same["input_ids"].shape == (2, 3)


def test_blended_dataset_shares_and_determinism(tmp_path):
    write_documents(tmp_path / "a", [[2, 3, EOD]] * 20, vocab_size=100)
    write_documents(tmp_path / "b", [[7, 8, 9, EOD]] * 20, vocab_size=100)
    a, b = PackedDataset(tmp_path / "a", seq_len=4), PackedDataset(tmp_path / "b", seq_len=4)
    mix = BlendedDataset([a, b], [0.75, 0.25], num_samples=400, seed=0)
    from_a = sum(1 for i in range(len(mix)) if 2 in mix[i]["input_ids"].tolist())
    assert from_a == 300
    again = BlendedDataset([a, b], [0.75, 0.25], num_samples=400, seed=0)
    assert np.array_equal(mix.sample_index, again.sample_index)
    assert not np.array_equal(mix.sample_index, BlendedDataset([a, b], [0.75, 0.25], 400, seed=1).sample_index)


def test_loader_checks_the_shards_before_the_first_sample(prefix, caplog):
    import logging

    from corpus.shards import ShardError

    with caplog.at_level(logging.INFO, logger="corpusforge.train"):
        ds = PackedDataset(prefix, seq_len=4)
    assert ds.token_ranges == [(0, 34)]
    assert any("checking 1 token shard set," in r.message and "sha256" in r.message for r in caplog.records)
    raw = bytearray(prefix.with_name("s.bin").read_bytes())
    raw[2 * 4] ^= 0x01  # token 4: 20 -> 21, still a valid id
    prefix.with_name("s.bin").write_bytes(bytes(raw))
    with pytest.raises(ShardError, match=r"s\.bin: sha256 differs"):
        PackedDataset(prefix, seq_len=4)
    unchecked = PackedDataset(prefix, seq_len=4, shuffle_documents=False, check=False)
    assert unchecked[1]["input_ids"].tolist() == [21, 21, 0, 30]  # what training would have read


def test_ids_the_model_cannot_embed_name_shard_and_document(prefix):
    from corpus.shards import ShardError

    ds = PackedDataset(prefix, seq_len=4)
    ds.check_vocab(35)
    with pytest.raises(ShardError, match=r"s\.bin: document 1 \(token 0 of it\) has id 20, outside the model's "
                                         r"vocabulary \[0, 20\)"):
        ds.check_vocab(20)
    with pytest.raises(ShardError, match="document 2 \\(token 4 of it\\) has id 34"):
        PackedDataset(prefix, seq_len=4, check=False).check_vocab(34)
