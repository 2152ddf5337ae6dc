"""Error types of the detector library.

Every error a user can cause carries enough context to act on it: the field, the value and where it
came from. ``retriable`` says whether trying the same thing again can succeed (it never can for bad data).
"""

from __future__ import annotations

from flowsentinel.detector.text import shown


class FlowSentinelError(Exception):
    """Base class of all errors raised on purpose by flowsentinel."""

    retriable = False


class ConfigError(FlowSentinelError, ValueError):
    """A configuration value is invalid; the message names the key and the value."""


class SchemaError(FlowSentinelError, ValueError):
    """A schema definition is invalid, or data does not fit the schema as a whole (e.g. missing columns)."""


# Why a record was rejected, as a short code from a fixed set: a metric label and a dead letter's
# flowsentinel.error.reason header. Named here once; messages say the same in words.
MISSING_VALUE = "missing_value"
WRONG_TYPE = "wrong_type"
NON_FINITE = "non_finite"
NEGATIVE_VALUE = "negative_value"
BAD_TIMESTAMP = "bad_timestamp"
MALFORMED = "malformed"  # a file line the reader cannot split into fields
INVALID = "invalid"  # none of the above
RECORD_CODES = (MISSING_VALUE, WRONG_TYPE, NON_FINITE, NEGATIVE_VALUE, BAD_TIMESTAMP, MALFORMED, INVALID)


class RecordError(FlowSentinelError, ValueError):
    """One record could not be parsed or validated. ``code`` is one of :data:`RECORD_CODES`, fit for a
    metric label.

    >>> str(RecordError("not a number", field="src_bytes", value="abc", where="line 7"))
    "line 7: field 'src_bytes' = 'abc': not a number"
    """

    def __init__(
        self,
        reason: str,
        *,
        field: str | None = None,
        value: object = None,
        where: str = "",
        code: str = INVALID,
    ) -> None:
        self.reason = reason
        self.code = code
        self.field = field
        self.value = value
        self.where = where
        super().__init__(self._text())

    def _text(self) -> str:
        parts = []
        if self.where:
            parts.append(f"{self.where}: ")
        if self.field is not None:
            parts.append(f"field {self.field!r} = {shown(self.value)}: ")
        parts.append(self.reason)
        return "".join(parts)


class ArtifactError(FlowSentinelError):
    """A model artifact is missing, truncated, tampered with or of an incompatible version."""
