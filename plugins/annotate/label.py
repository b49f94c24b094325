"""Check what an annotator sends before it is stored: a ranking in the item's given order (1 = best,
ties share a rank: ``[1, 2, 2]``, checked by the shared ``is_ranking``), optional aspect ratings, an
optional comment."""

from __future__ import annotations

import re
from typing import Any

from corpus.plugins.annotate.store import Settings
from corpus.plugins.preferences import is_ranking

MAX_COMMENT = 2000
SUBMISSION_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")


class BadLabel(ValueError):
    pass


def submission_id(body: dict[str, Any]) -> str:
    sid = body.get("submission_id")
    if not isinstance(sid, str) or not SUBMISSION_ID.fullmatch(sid):
        raise BadLabel("submission_id: 8 to 64 letters, digits, '-' or '_'")
    return sid


def check_label(body: dict[str, Any], k: int, settings: Settings) -> dict[str, Any]:
    """The label to store, from a request body; BadLabel says what is wrong."""
    ranking = body.get("ranking")
    if not isinstance(ranking, list) or len(ranking) != k:
        raise BadLabel(f"ranking: expected a list of {k} ranks")
    if not all(isinstance(r, int) and not isinstance(r, bool) and 1 <= r <= k for r in ranking):
        raise BadLabel(f"ranking: every rank is a whole number from 1 to {k}")
    if not is_ranking(ranking):
        raise BadLabel("ranking: not a ranking (1 = best, ties share a rank: 1, 2, 2, 3 or 1, 2, 2, 4)")
    aspects = body.get("aspects") or {}
    if not isinstance(aspects, dict):
        raise BadLabel("aspects: expected an object")
    clean: dict[str, dict[str, float]] = {}
    indices = {str(i) for i in range(k)}  # the only spellings: ASCII '0' to 'k-1', no sign, no leading zero
    for name, ratings in aspects.items():
        if name not in settings.aspects:
            raise BadLabel(f"aspects: unknown aspect {str(name)[:40]!r}")
        if not isinstance(ratings, dict):
            raise BadLabel(f"aspects.{name}: expected an object of response index -> rating")
        for idx, value in ratings.items():
            if idx not in indices:  # not str.isdigit(): it takes '²' and '٠', and '00' is '0' again
                raise BadLabel(f"aspects.{name}: response index must be '0' to '{k - 1}'")
            if isinstance(value, bool) or not isinstance(value, int | float) or not 1 <= value <= settings.scale:
                raise BadLabel(f"aspects.{name}: a rating is a number from 1 to {settings.scale}")
        if ratings:
            clean[name] = {idx: float(v) for idx, v in sorted(ratings.items(), key=lambda kv: int(kv[0]))}
    comment = body.get("comment") or ""
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT:
        raise BadLabel(f"comment: text of at most {MAX_COMMENT} characters")
    return {"ranking": ranking, "aspects": clean, "comment": comment}
