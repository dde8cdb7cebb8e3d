"""Shared by the unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture(autouse=True)
def _fresh_structlog() -> Iterator[None]:
    # `main()` binds structlog to the sys.stderr of its test (pytest's capture, closed after
    # it): a later test that logs would write to a closed file.
    yield
    structlog.reset_defaults()
