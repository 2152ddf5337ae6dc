"""Secrets: text that never shows itself (``str``, ``repr``, ``format``, the effective configuration), and a
log filter that cuts every secret made in this process out of every log line. A Kafka password, an SSL
key's password and the model signing key are all held as :class:`Secret`."""

from __future__ import annotations

import json
import logging


class Secret(str):
    """A string that does not show itself in logs, reprs or the effective configuration. Every secret made is
    remembered (in this process) so that :class:`RedactSecrets` can cut it out of any log line — the Kafka
    client logs its whole configuration at debug level, password included."""

    def __new__(cls, value: str = "") -> Secret:
        self = super().__new__(cls, value)
        if value:
            _SECRETS.update({value, repr(value)[1:-1], json_escaped(value)})
        return self

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:  # str(), %s and logging show the mask; the value only through reveal()
        return self.masked()

    def __format__(self, spec: str) -> str:  # f-strings and str.format too
        return format(self.masked(), spec)

    def masked(self) -> str:
        return "***" if self else ""

    def reveal(self) -> str:
        """The secret's text, as a plain ``str``: for the one place that hands it to a client or a check."""
        return str.__str__(self)


_SECRETS: set[str] = set()


def json_escaped(value: str) -> str:
    return json.dumps(value)[1:-1]


class RedactSecrets(logging.Filter):
    """A handler filter that replaces every known :class:`Secret` in a record's message with ``***``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _SECRETS:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler's own error path
            return True
        redacted = message
        for secret in sorted(_SECRETS, key=len, reverse=True):
            if secret in redacted:
                redacted = redacted.replace(secret, "***")
        if redacted is not message:
            record.msg, record.args = redacted, None
        return True


def redact_secrets_in_logs() -> None:
    """Put :class:`RedactSecrets` on every handler of the root logger (each command calls it after the
    logging set-up), so no library's log line carries a secret, at any level."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(RedactSecrets())
