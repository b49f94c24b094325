"""Names and tunables shared by the profiling modules (the figures are specified in docs/profile-format.md)."""

from __future__ import annotations

FORMAT = "corpusforge.profile/1"
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
Z_THRESHOLD = 3.5
OUTLIER_EXAMPLES = 5
TOP_LINES = 25
MIN_LINE_CHARS = 10  # shorter lines ("Home", "Share") are too common to say anything
LINE_TABLE = 10_000  # Misra-Gries capacity per source: a line in over 1/10000 of all lines is kept
NEAR_DUP_SAMPLE = 2000
NEAR_DUP_THRESHOLD = 0.8
NUM_PERM = 128
SHINGLE_WORDS = 5
SAMPLE_TEXT_CHARS = 20_000  # MinHash on the first 20k chars: bounds the sample's memory
SNIPPET_CHARS = 200
DISPLAY_BINS = 40
FRAC_DISPLAY_BINS = 20
# Three of the reader's 8 MiB pieces: every per-chunk buffer stays under glibc's 32 MiB mmap threshold, so
# freed buffers are reused instead of mapped (and page-faulted) afresh for each chunk.
CHUNK_BYTES = 24 << 20
EMPTY_KEY = 0x9E3779B97F4A7C15  # the text key of a document without a non-blank line
