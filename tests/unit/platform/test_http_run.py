"""`platform.http.run`: the event loop a service runs on, and its start-up objects frozen."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest
import uvloop
from aiohttp import web

from rwasync.platform import http
from rwasync.platform.settings import ServiceSettings


@pytest.fixture
def run_app_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    calls: list[dict[str, Any]] = []

    def fake_run_app(app: web.Application, **kwargs: Any) -> None:
        calls.append(kwargs)
        loop = kwargs.get("loop")
        if loop is not None:
            loop.close()

    monkeypatch.setattr(web, "run_app", fake_run_app)
    yield calls
    gc.unfreeze()


def test_services_run_on_uvloop_by_default(run_app_calls: list[dict[str, Any]]) -> None:
    http.run(web.Application(), ServiceSettings(port=0))
    assert isinstance(run_app_calls[0]["loop"], uvloop.Loop)


def test_the_standard_loop_when_asked(run_app_calls: list[dict[str, Any]]) -> None:
    http.run(web.Application(), ServiceSettings(port=0, RWASYNC_EVENT_LOOP="asyncio"))
    # aiohttp then makes the standard library's loop itself.
    assert run_app_calls[0]["loop"] is None


def test_what_start_up_built_is_out_of_the_collectors_sight(
    run_app_calls: list[dict[str, Any]],
) -> None:
    gc.unfreeze()
    app = web.Application()
    http.run(app, ServiceSettings(port=0))
    # The app (built before serving) is frozen: full collections no longer walk it.
    assert gc.get_freeze_count() > 0
    assert all(o is not app for o in gc.get_objects())
