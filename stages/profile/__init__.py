"""Corpus profiling: per-document features, aggregated in bounded memory into ``profile.json``
(specified in docs/profile-format.md).

* constants.py: feature names and tunables.
* chars.py: character classes, words and scripts per document, on the UTF-8 bytes (numpy).
* lines.py: line figures, the exact-duplicate text key, the most repeated lines (Misra-Gries).
* meta.py: meta field presence and JSON types.
* features.py: all per-document features of a chunk.
* histograms.py: fine fixed-bin histograms; quantiles, robust scale, display histograms from them.
* aggregate.py: mergeable per-source accumulators.
* rawjsonl.py: raw JSONL read for profiling (the reader's parse and checks, no document building).
* inputs.py: units of work (input files, shards), the per-unit profiler, the thread runner.
* spill.py: per-document rows on disk, read back by DuckDB out of core.
* outliers.py: robust z-score outliers over the spill.
* neardup.py: MinHash-LSH near-duplicate estimate on the sample.
* summary.py: the profile sections and profile.json.
* run.py: profile_frames / profile_input; operator.py: the ``profile`` pipeline operator.
"""

from .aggregate import Acc as _Acc
from .chars import char_counts as _char_counts
from .chars import script_counts as _script_counts
from .constants import FEATURES, FORMAT, LOG_FEATURES, QUANTILES, SCRIPTS
from .features import doc_features
from .histograms import feature_summary as _feature
from .neardup import jaccard as _jaccard
from .neardup import lsh_params as _lsh_params
from .neardup import near_dups as _near_dups
from .neardup import signatures as _signatures
from .operator import Profile
from .run import profile_frames, profile_input

__all__ = ["FEATURES", "FORMAT", "LOG_FEATURES", "QUANTILES", "SCRIPTS", "Profile", "doc_features",
           "profile_frames", "profile_input"]
# Internals the tests check directly, under their historical names.
_TESTED = (_Acc, _char_counts, _feature, _jaccard, _lsh_params, _near_dups, _script_counts, _signatures)
