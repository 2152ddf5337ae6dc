"""Create the topics flowsentinel uses if they do not exist (explicitly, with a partition count, rather
than relying on a broker's auto-creation defaults)."""

from __future__ import annotations

import logging
from typing import Any

from flowsentinel.detector.errors import ConfigError

log = logging.getLogger(__name__)


def ensure_topics(
    bootstrap_servers: str, topics: dict[str, int], *, security: dict[str, Any] | None = None
) -> None:
    """``topics``: name → partitions. Existing topics are left as they are."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    try:
        admin = KafkaAdminClient(
            bootstrap_servers=[s.strip() for s in bootstrap_servers.split(",")],
            request_timeout_ms=15_000,
            **(security or {}),
        )
    except KafkaError as exc:
        raise ConfigError(f"cannot reach Kafka at {bootstrap_servers!r}: {exc}") from None
    try:
        existing = set(admin.list_topics())
        wanted = [NewTopic(name, n, 1) for name, n in topics.items() if name not in existing]
        if wanted:
            try:
                admin.create_topics(wanted)
                log.info("created topic(s) %s", ", ".join(f"{t.name} ({t.num_partitions})" for t in wanted))
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()
