"""Plain-Python reference deduplication over a list of texts in corpus order, for tests: what exact,
near and line dedup must keep, computed without any of the engine's machinery (no digests, no MinHash,
no partitions, no row ids). Texts are expected to use ASCII whitespace only, where ``str.split`` and
the engine's whitespace rule agree."""

from __future__ import annotations

from corpus.stages.dedup_text import word_shingles_ref


def norm(text: str, lowercase: bool) -> str:
    """Whitespace runs to one space, ends stripped (and lowercased): the default normalisations on text
    without punctuation or digits."""
    return " ".join((text.lower() if lowercase else text).split())


def exact_kept(texts: list[str], lowercase: bool = False) -> list[bool]:
    """The first document of each normalised text is kept."""
    seen: set[str] = set()
    kept = []
    for t in texts:
        n = norm(t, lowercase)
        kept.append(n not in seen)
        seen.add(n)
    return kept


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def near_kept(texts: list[str], threshold: float, ngram: int = 5) -> list[bool]:
    """Union-find over every pair whose word-shingle sets have Jaccard >= threshold; the first document
    of each component (in corpus order) is kept."""
    sets = [set(word_shingles_ref(norm(t, True), ngram)) for t in texts]
    parent = list(range(len(texts)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            if jaccard(sets[i], sets[j]) >= threshold:
                a, b = find(i), find(j)
                parent[max(a, b)] = min(a, b)
    return [find(i) == i for i in range(len(texts))]


def line_dedup(texts: list[str], min_docs: int = 2, min_chars: int = 10) -> list[str]:
    """Lines whose normalised text (lowercased) is at least min_chars long and occurs in at least
    min_docs documents are removed everywhere but at their first occurrence in corpus order."""
    docs_with: dict[str, set[int]] = {}
    for d, t in enumerate(texts):
        for line in t.split("\n"):
            docs_with.setdefault(norm(line, True), set()).add(d)
    seen: set[str] = set()
    out = []
    for t in texts:
        keep = []
        for line in t.split("\n"):
            n = norm(line, True)
            repeated = len(n) >= min_chars and len(docs_with[n]) >= min_docs
            if not repeated or n not in seen:
                keep.append(line)
            seen.add(n)
        out.append("\n".join(keep))
    return out
