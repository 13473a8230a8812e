"""Control characters in text people send us. Pure: no Flask.

A name, a place or a code ends up in one line of something else: an email
subject or another header, an SMS, a CSV cell, a log line. A CR or LF there
starts a new header or record, and other control characters (C0, DEL, C1)
and the Unicode line and paragraph separators break it more quietly; the
bidirectional controls make it read in another order than it was written. Such
text is refused where it comes in; what is sent is made one line anyway.
"""

from __future__ import annotations

import re

# The bidirectional embeddings, overrides and isolates: text shown after
# one reads in another order than it was written (an address, a name, a
# reference that shows as something it is not).
_BIDI = "\u202a-\u202e\u2066-\u2069"
# C0 controls (TAB, LF and CR among them), DEL, C1 controls (NEL among
# them), the Unicode line and paragraph separators, and the bidi controls.
_BREAKING = re.compile(f"[\x00-\x1f\x7f-\x9f\u2028\u2029{_BIDI}]")
# Free text (a description, a reason, an address) may have lines and tabs.
_BREAKING_FREE_TEXT = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f{_BIDI}]")

ONE_LINE = "Must be one line: no line breaks, tabs or other control characters."
NO_CONTROL = "Must not contain control characters other than line breaks and tabs."


def breaks_a_line(text: str) -> bool:
    """Whether `text` holds a line break or another control character."""
    return _BREAKING.search(text) is not None


def has_control_characters(text: str) -> bool:
    """Whether `text` holds a control character other than CR, LF and TAB."""
    return _BREAKING_FREE_TEXT.search(text) is not None


def one_line(text: str) -> str:
    """`text` on one line: line breaks and control characters become
    spaces, and each run of spaces one space."""
    return " ".join(_BREAKING.sub(" ", text).split())
