"""Every test here runs ``flowsentinel`` commands (as processes, or their whole code path with real
training): marked ``cli``, so that the fast unit suite (``-m "not integration and not cli"``) leaves them out."""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.cli)
