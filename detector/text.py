"""Text from traffic, made safe to write anywhere: Kafka keys and headers, JSON, CSV, log lines.

Records are shaped by attackers. A JSON string may hold a lone UTF-16 surrogate (``"\\ud800"``), which a
Python ``str`` carries but UTF-8 cannot encode; a value may be nested a thousand levels deep, or be 60 KB
long. Anything that leaves the process goes through these helpers, which never raise.

>>> clean_text("10.0.0.7")
'10.0.0.7'
>>> clean_text("\\ud800evil")
'\\\\ud800evil'
>>> utf8("\\ud800evil")
b'\\\\ud800evil'
>>> shown([[[1]]]), shown("x" * 100)[-22:], shown(10**400)[-18:]
('<a JSON array of 1 item(s)>', "xxx…' (100 characters)", '… (401 characters)')
>>> printable("evil\\nINFO forged line")
'evil\\\\nINFO forged line'
"""

from __future__ import annotations


def clean_text(s: str) -> str:
    """``s``, with every character UTF-8 cannot encode (a lone surrogate) written as its ``\\uXXXX`` escape.
    Cheap for the common case: ASCII text is returned as it is."""
    if s.isascii():
        return s
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return s.encode("utf-8", "backslashreplace").decode("utf-8")
    return s


def utf8(s: str, limit: int | None = None) -> bytes:
    """``s`` as UTF-8 bytes, lone surrogates escaped (never UnicodeEncodeError); at most ``limit`` bytes,
    cut at a character boundary."""
    data = clean_text(s).encode("utf-8")
    if limit is not None and len(data) > limit:
        data = data[:limit].decode("utf-8", "ignore").encode("utf-8")
    return data


def printable(s: str, limit: int = 200) -> str:
    """``s`` for one log line: control characters (a newline forging a second log line) and lone surrogates
    escaped, at most ``limit`` characters of it."""
    clipped = s if len(s) <= limit else s[:limit] + "…"
    if clipped.isprintable() and clipped.isascii():
        return clipped
    return "".join(
        c
        if c.isprintable() and not 0xD800 <= ord(c) <= 0xDFFF
        else c.encode("unicode_escape").decode("ascii")
        for c in clipped
    )


def shown(value: object, limit: int = 80) -> str:
    """A bounded description of a record's value for an error message: ``repr`` for short scalars, the
    start of a long string, and only the type and size of a JSON array or object (whose ``repr`` would
    recurse as deep as the value is nested) or of an integer with hundreds of digits."""
    if isinstance(value, list | tuple):
        return f"<a JSON array of {len(value)} item(s)>"
    if isinstance(value, dict):
        return f"<a JSON object of {len(value)} key(s)>"
    if isinstance(value, str):
        text = repr(value[:limit] + "…") if len(value) > limit else repr(value)
        return text if len(value) <= limit else f"{text} ({len(value):,} characters)"
    try:
        text = repr(value)
    except ValueError:  # an integer of more digits than Python converts to text
        return "<an integer of thousands of digits>"
    return text if len(text) <= limit + 20 else f"{text[:limit]}… ({len(text):,} characters)"
