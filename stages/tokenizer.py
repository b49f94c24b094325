"""Tokenizer training and loading: byte-level BPE or Unigram with HF ``tokenizers``, saved in HF format.

A trained tokenizer folder holds ``tokenizer.json`` (the tokenizer itself), ``tokenizer_config.json``
and ``special_tokens_map.json``, so ``transformers.PreTrainedTokenizerFast.from_pretrained(folder)``
loads it unchanged. Both kinds are byte-level (every byte is in the alphabet, no normaliser), so
``decode(encode(text)) == text`` for any text and there is never an unknown token.

Training reads the text column of a corpus folder's Parquet shards in record batches, so memory is
bounded by the trainer's own statistics (word counts), not by the corpus.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from corpus import frames
from corpus.manifest import read_manifest, require_intact
from corpus.owner import refuse_managed, require_folder
from corpus.writers import write_bytes_atomic

if TYPE_CHECKING:
    from corpus.progress import Progress

EOD, PAD = "<|endoftext|>", "<|pad|>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
log = logging.getLogger(__name__)
SPECIAL_TOKENS: tuple[str, ...] = (EOD, PAD, *ROLE_TOKENS)
KINDS = ("bpe", "unigram")

# A minimal chat template over the role markers (SFT formats conversations with it).
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def corpus_texts(corpus: Path, text_column: str = "text", batch_rows: int = 2048,
                 max_docs: int | None = None) -> Iterator[list[str]]:
    """Batches of texts from a corpus folder (``data/*.parquet`` in manifest order) or one Parquet file.

    Reads record batches, never whole shards, so memory stays at one batch. A missing path, or a
    folder that holds no corpus, is a FileNotFoundError (never an empty stream)."""
    corpus = Path(corpus)
    if not corpus.exists():
        raise FileNotFoundError(f"no corpus at {corpus}: give a corpus folder (a `corpus run` output, with "
                                "manifest.json) or a Parquet file")
    if corpus.is_file():
        files = [corpus]
    else:
        try:
            manifest = read_manifest(corpus)
        except FileNotFoundError:
            files = sorted((corpus / "data").glob("*.parquet")) or sorted(corpus.glob("*.parquet"))
            if not files:
                raise FileNotFoundError(f"{corpus} holds no corpus: no manifest.json and no data/*.parquet "
                                        "(run `corpus run CONFIG` first)") from None
        else:  # a corpus folder: every shard checked against its manifest before a byte is trained on
            files = [corpus / s["path"] for s in require_intact(corpus, manifest, level="hash")["shards"]]
    left = max_docs
    for path in files:
        for batch in frames.batches(path, [text_column], batch_rows=batch_rows):
            texts = [t for t in batch.column(0).to_pylist() if t]
            if left is not None:
                texts = texts[:left]
                left -= len(texts)
            if texts:
                yield texts
            if left is not None and left <= 0:
                return


# The longest run of non-whitespace characters the trainer is given: HF tokenizers' trainers are superlinear in
# a pre-token's length (one 300,000-character word took minutes), so longer runs are cut into pieces of this
# length for training only (what tokenize encodes is never cut). Words, URLs and hashes are far shorter.
MAX_RUN = 1000
_LONG_RUN = re.compile(rf"\S{{{MAX_RUN + 1},}}")


def _cut_runs(text: str) -> str:
    """``text`` with each run of non-whitespace longer than MAX_RUN cut into MAX_RUN-character pieces."""
    return _LONG_RUN.sub(lambda m: "\n".join(m[0][i:i + MAX_RUN] for i in range(0, len(m[0]), MAX_RUN)), text)


def _new_tokenizer(kind: str) -> Tokenizer:
    if kind == "bpe":
        tok = Tokenizer(models.BPE())
    elif kind == "unigram":
        tok = Tokenizer(models.Unigram())
    else:
        raise ValueError(f"tokenizer kind must be one of {KINDS}, got {kind!r}")
    # GPT-2 style byte-level pre-tokenisation without a prefix space: lossless, no normaliser.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    return tok


def _trainer(kind: str, vocab_size: int, special_tokens: Sequence[str], min_frequency: int,
             show_progress: bool) -> trainers.Trainer:
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if kind == "bpe":
        return trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                   special_tokens=list(special_tokens), initial_alphabet=alphabet,
                                   show_progress=show_progress)
    return trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=list(special_tokens),
                                   initial_alphabet=alphabet, show_progress=show_progress,
                                   max_piece_length=16)


def train_tokenizer(corpus: Path, out: Path, kind: str = "bpe", vocab_size: int = 32000,
                    special_tokens: Sequence[str] = SPECIAL_TOKENS, min_frequency: int = 2,
                    text_column: str = "text", max_docs: int | None = None, batch_rows: int = 2048,
                    model_max_length: int = 2048, show_progress: bool = False,
                    progress: Progress | None = None) -> Path:
    """Train a byte-level ``kind`` ("bpe" or "unigram") tokenizer on a corpus folder; save it in HF format.

    corpus: a prepared corpus folder (``data/*.parquet`` + ``manifest.json``) or a Parquet file.
    special_tokens: added first, so they get ids 0.. in order (``<|endoftext|>`` = 0 by default); the
    first is the end-of-document token, ``<|pad|>`` (if listed) the padding token.
    max_docs: train on the first N documents only (a sample is usually enough). ``progress``: a bar of the
    documents read, the longest part of training (`corpus tokenizer train`). Returns ``out``.
    """
    if EOD not in special_tokens:
        raise ValueError(f"special_tokens must include the end-of-document token {EOD!r}")
    if min_frequency < 0:  # the tokenizers library took it as unsigned: an OverflowError traceback
        raise ValueError(f"min_frequency must be 0 or more, got {min_frequency}")
    if max_docs is not None and max_docs < 1:  # 0 said the corpus had no documents; -5 was read as all of them
        raise ValueError(f"max_docs must be 1 or more (or left out for every document), got {max_docs}")
    base = len(pre_tokenizers.ByteLevel.alphabet()) + len(special_tokens)
    if vocab_size <= base:
        raise ValueError(f"vocab_size {vocab_size} leaves no room for learned tokens: the byte alphabet and the "
                         f"{len(special_tokens)} special tokens take {base}; ask for more (8000 to 64000 is usual)")
    if vocab_size >= 1 << 31:  # token shards hold ids as int32 (the library's own limit, u32, was a traceback)
        raise ValueError(f"vocab_size {vocab_size:,} is more than token ids can hold (at most {(1 << 31) - 1:,}; "
                         "8000 to 64000 is usual)")
    require_folder(Path(out))
    refuse_managed(out)
    tok = _new_tokenizer(kind)
    trainer = _trainer(kind, vocab_size, special_tokens, min_frequency, show_progress)
    seen, cut = [0], [0]
    texts = corpus_texts(Path(corpus), text_column, batch_rows, max_docs)
    shown = _reading(progress, Path(corpus), max_docs)

    def counted() -> Iterator[list[str]]:
        for batch in texts:
            seen[0] += len(batch)
            shown(seen[0])
            long = [i for i, t in enumerate(batch) if len(t) > MAX_RUN and _LONG_RUN.search(t)]
            for i in long:
                batch[i] = _cut_runs(batch[i])
            cut[0] += len(long)
            yield batch

    try:
        tok.train_from_iterator(counted(), trainer=trainer)
        if seen[0]:  # the bar's last word is every document read (without a total it showed a count of a second ago)
            shown(seen[0], True)
    finally:
        if progress is not None:
            progress.close()
    if not seen[0]:
        raise ValueError(f"{corpus} has no documents with text in column {text_column!r}: nothing to train on")
    if cut[0]:
        log.warning("%s of the %s documents have runs of more than %s characters without whitespace: cut into "
                    "pieces of %s for training (the trainer slows down steeply on long pieces); tokenize encodes "
                    "them whole", f"{cut[0]:,}", f"{seen[0]:,}", f"{MAX_RUN:,}", f"{MAX_RUN:,}")
    got = tok.get_vocab_size()
    if got < vocab_size:
        log.warning("the trained vocabulary has %s tokens, fewer than the %s asked: the %s documents hold no more "
                    "pairs seen at least min_frequency=%d times to merge (a small or repetitive corpus: lower "
                    "vocab_size or min_frequency, or train on more text)", f"{got:,}", f"{vocab_size:,}",
                    f"{seen[0]:,}", min_frequency)
    return save_tokenizer(tok, Path(out), special_tokens=special_tokens, model_max_length=model_max_length,
                          extra={"corpusforge": {"kind": kind, "vocab_size": vocab_size, "trained_vocab_size": got,
                                                 "documents": seen[0], "min_frequency": min_frequency,
                                                 "corpus": str(corpus), "corpus_hash": _corpus_hash(Path(corpus))}})


def _reading(progress: Progress | None, corpus: Path, max_docs: int | None) -> Callable[..., None]:
    """``shown(docs read, last=False)``: the documents read so far on a bar (at most once a second, and the
    last count always: off a terminal each update is a line); its total from the manifest or the Parquet
    file's metadata."""
    if progress is None:
        return lambda docs, last=False: None
    try:
        total = read_manifest(corpus)["docs"] if corpus.is_dir() else pq.ParquetFile(corpus).metadata.num_rows
    except (FileNotFoundError, KeyError, OSError, pa.ArrowException):
        total = None
    if total is not None and max_docs is not None:
        total = min(total, max_docs)
    bar: list[int] = []  # started with the first batch: a corpus that cannot be read gets its error alone
    last = [0.0]

    def shown(docs: int, final: bool = False) -> None:
        if not bar:
            bar.append(progress.start().add("tokenizer train: reading", total=total))
        now = time.monotonic()
        if final and total is not None and docs == total:
            return  # shown when it was read
        if now - last[0] >= 1.0 or docs == total or final:
            last[0] = now
            progress.update(bar[0], docs, f"{docs:,} docs")

    return shown


def _corpus_hash(corpus: Path) -> str | None:
    try:
        return read_manifest(corpus).get("content_hash")
    except (FileNotFoundError, NotADirectoryError):
        return None


def save_tokenizer(tok: Tokenizer, out: Path, special_tokens: Sequence[str] = SPECIAL_TOKENS,
                   model_max_length: int = 2048, extra: dict | None = None) -> Path:
    """Write ``tok`` as an HF tokenizer folder (tokenizer.json, tokenizer_config.json,
    special_tokens_map.json), each file atomically. Special tokens absent from ``tok`` are skipped."""
    out.mkdir(parents=True, exist_ok=True)
    present = [t for t in special_tokens if tok.token_to_id(t) is not None]
    write_bytes_atomic(out / "tokenizer.json", tok.to_str(pretty=False).encode())
    roles = [t for t in present if t not in (EOD, PAD)]
    smap: dict = {}
    if EOD in present:
        smap.update(bos_token=EOD, eos_token=EOD)
    if PAD in present:
        smap["pad_token"] = PAD
    if roles:
        smap["additional_special_tokens"] = roles
    added = {str(tok.token_to_id(t)): {"content": t, "lstrip": False, "rstrip": False, "normalized": False,
                                       "single_word": False, "special": True} for t in present}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": model_max_length,
        # Byte-level decoding is already exact; HF's clean-up would alter spaces before punctuation.
        "clean_up_tokenization_spaces": False,
        "add_bos_token": False,
        "add_eos_token": False,
        "added_tokens_decoder": added,
        **smap,
        **({"chat_template": CHAT_TEMPLATE} if set(ROLE_TOKENS) <= set(present) else {}),
        **(extra or {}),
    }
    write_bytes_atomic(out / "tokenizer_config.json", json.dumps(config, indent=2).encode())
    write_bytes_atomic(out / "special_tokens_map.json", json.dumps(smap, indent=2).encode())
    return out


def tokenizer_file(path: Path) -> Path:
    """The ``tokenizer.json`` of a tokenizer folder, or ``path`` itself when it is the file."""
    path = Path(path)
    f = path / "tokenizer.json" if path.is_dir() else path
    if not f.is_file():
        raise FileNotFoundError(f"no tokenizer.json at {path}")
    return f


def load_tokenizer(path: Path) -> Tokenizer:
    """Load a ``tokenizer.json`` file or a tokenizer folder (HF format) from a local path."""
    f = tokenizer_file(path)
    try:
        return Tokenizer.from_file(str(f))
    except Exception as exc:  # the tokenizers library raises a bare Exception with serde's message
        raise ValueError(f"{f}: not a tokenizer.json the tokenizers library reads ({exc})") from None


def load_hf_tokenizer(path: Path) -> Any:
    """The same local tokenizer as a ``transformers`` fast tokenizer (what training uses: special
    tokens, padding, the chat template): a folder's own tokenizer class when its config names one,
    else ``PreTrainedTokenizerFast`` over its ``tokenizer.json``. Needs the ``train`` extra."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    path = Path(path)
    if path.is_file():  # a bare tokenizer.json
        return PreTrainedTokenizerFast(tokenizer_file=str(path))
    if not path.is_dir():
        raise FileNotFoundError(f"no tokenizer at {path}")
    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError):
        return PreTrainedTokenizerFast.from_pretrained(str(path), local_files_only=True)


def import_tokenizer(src: Path, out: Path, special_tokens: Sequence[str] = SPECIAL_TOKENS) -> Path:
    """Copy a local tokenizer (``tokenizer.json`` or an HF folder) into ``out`` in HF format.

    An HF folder's own config files are kept as they are; a bare ``tokenizer.json`` gets configs
    written for whichever of ``special_tokens`` it already has."""
    src = Path(src)
    require_folder(Path(out))
    refuse_managed(out)
    if src.is_dir() and (src / "tokenizer_config.json").is_file():
        out.mkdir(parents=True, exist_ok=True)
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            if (src / name).is_file() and (src / name).resolve() != (out / name).resolve():
                shutil.copyfile(src / name, out / name)
        return out
    return save_tokenizer(load_tokenizer(src), out, special_tokens=special_tokens)


def tokenizer_hash(path: Path) -> str:
    """sha256 of the tokenizer.json bytes: what tokenized shards record to name their tokenizer."""
    return hashlib.sha256(tokenizer_file(path).read_bytes()).hexdigest()


def special_token_ids(tok: Tokenizer) -> dict[str, int]:
    """Ids of the special tokens the tokenizer has, by token (added tokens marked special)."""
    return {t.content: i for i, t in sorted(tok.get_added_tokens_decoder().items()) if t.special}


def eod_id(tok: Tokenizer, path: Path | None = None) -> int:
    """The end-of-document id: ``<|endoftext|>`` if present, else the HF config's eos_token."""
    i = tok.token_to_id(EOD)
    if i is not None:
        return i
    if path is not None and Path(path).is_dir() and (Path(path) / "tokenizer_config.json").is_file():
        eos = json.loads((Path(path) / "tokenizer_config.json").read_text()).get("eos_token")
        if isinstance(eos, dict):
            eos = eos.get("content")
        if eos and tok.token_to_id(eos) is not None:
            return tok.token_to_id(eos)
    raise ValueError(f"the tokenizer has no end-of-document token ({EOD!r} or a configured eos_token)")
