"""Corpus profiling: per-document features, aggregated in bounded memory into ``profile.json``
(specified in docs/profile-format.md). Raw input is read by the corpus readers only.

* constants.py: feature names and tunables.
* chars.py: class bits and script of every code point (built with polars' regex engine).
* kernel.py: the one compiled pass (character classes, words, scripts, near-duplicate sketch).
* lines.py: line figures and the most repeated lines (polars; Misra-Gries tables).
* features.py: all per-document features of a chunk, as a polars frame.
* meta.py: meta field presence and JSON types.
* histograms.py: fine fixed-bin histograms; quantiles and display histograms from them.
* extremes.py: outlier example candidates kept while streaming.
* aggregate.py: mergeable per-source accumulators.
* inputs.py: units of work (input files, shards), the per-unit profiler, the thread runner.
* spill.py: per-document rows on disk, read back by streaming polars scans.
* outliers.py: the outlier rule, counts over the spill, examples from the candidates.
* neardup.py: the near-duplicate rate (minhash_dedup's own code) with its confidence interval.
* summary.py: the profile sections and profile.json.
* run.py: profile_frames / profile_input; operator.py: the ``profile`` pipeline operator.
"""

from .constants import FEATURES, FORMAT, LOG_FEATURES, QUANTILES, SCRIPTS
from .features import doc_features
from .operator import Profile
from .outliers import RULE as OUTLIER_RULE
from .run import profile_frames, profile_input, warm_up

__all__ = ["FEATURES", "FORMAT", "LOG_FEATURES", "OUTLIER_RULE", "QUANTILES", "SCRIPTS", "Profile", "doc_features",
           "profile_frames", "profile_input", "warm_up"]
