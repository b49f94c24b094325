"""Names and tunables shared by the profiling modules (the figures are specified in docs/profile-format.md)."""

from __future__ import annotations

FORMAT = "corpusforge.profile/2"
LOG_FEATURES = ("n_chars", "n_words", "n_lines", "est_tokens", "mean_word_len")
FRAC_FEATURES = ("frac_alpha", "frac_digit", "frac_upper", "frac_punct", "frac_space", "frac_nonprint",
                 "frac_lines_terminal_punct", "dup_line_ratio", "frac_replacement")
FEATURES = LOG_FEATURES + FRAC_FEATURES
INT_FEATURES = frozenset({"n_chars", "n_words", "n_lines", "est_tokens"})
QUANTILES = {"p01": 0.01, "p05": 0.05, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p95": 0.95, "p99": 0.99}
SCRIPTS = ("Latin", "Cyrillic", "Greek", "Arabic", "Hebrew", "Devanagari", "Han", "Hiragana", "Katakana", "Hangul",
           "Thai")
OTHER_SCRIPT = "Other"
TERMINAL_PUNCT = (".", "!", "?", "…", "。", "！", "？", '"', "'")
# Mojibake: U+FFFD, and UTF-8 read as Latin-1/cp1252: Ã or Â then one of MOJIBAKE_AFTER_A (Ã© for é,
# Â  for nbsp), â€ (â€™ for ’), ï»¿ (a BOM). MOJIBAKE_AFTER_A: what a UTF-8 continuation byte becomes.
MOJIBAKE_AFTER_A = (*range(0x80, 0xC0), 0x152, 0x153, 0x160, 0x161, 0x178, 0x17D, 0x17E, 0x192, 0x2C6, 0x2DC,
                    0x2013, 0x2014, *range(0x2018, 0x201F), 0x2020, 0x2021, 0x2022, 0x2026, 0x2030, 0x2039,
                    0x203A, 0x20AC, 0x2122)
# Outliers (outliers.py): beyond Z_THRESHOLD robust z-scores on a log (LOG_FEATURES) or logit (fractions)
# scale, and among the OUTLIER_SHARE most extreme documents on their side (OUTLIER_MIN_DOCS in a small section).
Z_THRESHOLD = 3.5
OUTLIER_SHARE = 0.01
OUTLIER_MIN_DOCS = 5
LOGIT_EPS = 1e-3  # fractions are taken as (x + eps) / (1 - x + eps) before the log: 0 and 1 stay finite
OUTLIER_EXAMPLES = 5
TOP_LINES = 25
MIN_LINE_CHARS = 10  # shorter lines ("Home", "Share") are too common to say anything
LINE_TABLE = 10_000  # Misra-Gries capacity per source: a line in over 1/10000 of all lines is kept
NEAR_DUP_SAMPLE = 2000  # documents sampled per section for the near-duplicate estimate


def check_sample(n: int) -> int:
    """A near-duplicate sample size: 0 (no estimate) or more; -5 gave a rate of 0.5 on any corpus."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"near_dup_sample must be 0 (no near-duplicate estimate) or more, got {n!r}")
    return n
NEAR_DUP_THRESHOLD = 0.8
NEAR_DUP_CANDIDATES = 8  # earlier documents compared per sampled one (those sharing most sketch values)
SNIPPET_CHARS = 200
DISPLAY_BINS = 40
FRAC_DISPLAY_BINS = 20
# Input per chunk: the readers' own piece, so a chunk is one polars parse; memory per thread is a few
# chunks' worth (sizes measured in docs/benchmarks.md).
CHUNK_BYTES = 8 << 20
