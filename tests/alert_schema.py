"""Alert messages checked against the JSON Schemas the repository publishes for them (docs/alert.schema.json,
docs/alert-ecs.schema.json): the integration suite passes every alert it reads through :func:`check_alert`."""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

from tests.conftest import REPO


@cache
def _validators() -> tuple[Draft202012Validator, Draft202012Validator]:
    native = json.loads((REPO / "docs" / "alert.schema.json").read_text())
    ecs = json.loads((REPO / "docs" / "alert-ecs.schema.json").read_text())
    registry = Registry().with_resource(native["$id"], Resource.from_contents(native))
    checker = FormatChecker()
    return (
        Draft202012Validator(native, format_checker=checker),
        Draft202012Validator(ecs, registry=registry, format_checker=checker),
    )


def check_alert(message: Any) -> dict[str, Any]:
    """The alert, after checking it against its schema (the ECS form when it has ``@timestamp``); raises
    jsonschema.ValidationError naming the member that does not fit."""
    native, ecs = _validators()
    if isinstance(message, dict) and "@timestamp" in message:
        ecs.validate(message)
        body = message["flowsentinel"]
    else:
        native.validate(message)
        body = message
    for name in ("event_time", "kafka_timestamp", "detected_at"):  # (FormatChecker needs an extra package)
        if body[name] is not None:
            datetime.fromisoformat(body[name])
    return message
