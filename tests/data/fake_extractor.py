"""A stand-in HTML extractor for tests/test_clean_html.py (html_to_text's `extractor: module:function`):
pages name what should happen to them."""

from __future__ import annotations

import os
import time


def extract(html: str) -> str | None:
    if "spin forever" in html:
        while True:  # a pathological page: only a kill ends this
            pass
    if "sleep forever" in html:
        time.sleep(3600)
    if "wait a while" in html:
        time.sleep(1.5)  # waiting, not computing: within a 1 s CPU limit
        return "WAITED"
    if "crash the process" in html:
        os._exit(3)
    if "raise an error" in html:
        raise ValueError("unparseable page\nwith a second line")
    if "no text" in html:
        return None
    return html.replace("<p>", "").replace("</p>", "").upper()
