"""Corpus profiling: per-document features, aggregated in bounded memory into ``profile.json``
(specified in docs/profile-format.md).

* constants.py: feature names and tunables.
* chars.py: class bits and script of every code point (built with polars' regex engine).
* textscan.py: the compiled pass over a chunk's UTF-8 bytes: classes, words, lines, line hashes, text
  keys, mojibake, scripts per document.
* lines.py: the most repeated lines (Misra-Gries over the kernel's line hashes).
* sample.py: the MinHash sample (smallest text keys, counts, texts).
* extremes.py: outlier example candidates kept while streaming (most extreme docs per feature).
* meta.py: meta field presence and JSON types.
* features.py: all per-document features of a chunk.
* histograms.py: fine fixed-bin histograms; quantiles, robust scale, display histograms from them.
* aggregate.py: mergeable per-source accumulators.
* jsonscan.py: the compiled scan of raw JSONL: each line's fate, texts, ids, meta key types.
* rawjsonl.py: raw JSONL read for profiling (jsonscan, the reader's per-record rules where it declines).
* nbutil.py: numba intrinsics the kernels share (borrowed arrays, unaligned loads).
* inputs.py: units of work (input files, shards), the per-unit profiler, the thread runner.
* spill.py: per-document rows on disk, read back by streaming polars scans (distinct keys, line counts).
* outliers.py: robust z-score outlier counts over the spill, examples from the candidates.
* neardup.py: MinHash-LSH near-duplicate estimate on the sample.
* summary.py: the profile sections and profile.json.
* run.py: profile_frames / profile_input; operator.py: the ``profile`` pipeline operator.
"""

from .aggregate import Acc as _Acc
from .constants import FEATURES, FORMAT, LOG_FEATURES, QUANTILES, SCRIPTS
from .features import doc_features
from .histograms import feature_summary as _feature
from .neardup import jaccard as _jaccard
from .neardup import lsh_params as _lsh_params
from .neardup import near_dups as _near_dups
from .neardup import signatures as _signatures
from .operator import Profile
from .run import profile_frames, profile_input, warm_up
from .textscan import Texts as _Texts
from .textscan import scan_texts as _scan_texts

__all__ = ["FEATURES", "FORMAT", "LOG_FEATURES", "QUANTILES", "SCRIPTS", "Profile", "doc_features",
           "profile_frames", "profile_input", "warm_up"]
# Internals the tests check directly, under their historical names.
_TESTED = (_Acc, _Texts, _feature, _jaccard, _lsh_params, _near_dups, _scan_texts, _signatures)
