"""Component error text in a few words, so a decision, a condition's reason and a log line
stay one short line (pure).

Components answer errors in their own formats: Patroni's REST API (Python's http.server)
sends a whole HTML page with a 502, which once filled a decision. The HTTP status already
says what failed; the page adds nothing.
"""

from __future__ import annotations

import re

DECISION_CHARS = 200  # a decision: one line of a terminal or the journal
REASON_CHARS = 400  # a condition's reason may list several members

# An HTML document up to its end, or to the next "; " (joined errors) when the client cut it.
_HTML_PAGE = re.compile(r"<(?:!DOCTYPE|html)\b.*?(?:</html>|(?=; )|$)", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[a-zA-Z/!][^>]*>")
_SPACE = re.compile(r"\s+")


def brief(text: str, limit: int = DECISION_CHARS) -> str:
    """`text` without HTML, on one line, at most `limit` characters (cut with "...")."""
    if "<" in text:
        text = _TAG.sub(" ", _HTML_PAGE.sub("", text)).replace(" ;", ";")
    text = _SPACE.sub(" ", text).strip()
    if len(text) > limit:
        text = text[: limit - 3].rstrip() + "..."
    return text
