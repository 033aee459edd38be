"""`platform.http.run`: which event loop a service runs on."""

from __future__ import annotations

from typing import Any

import pytest
import uvloop
from aiohttp import web

from rwasync.platform import http
from rwasync.platform.settings import ServiceSettings


@pytest.fixture
def run_app_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    def fake_run_app(app: web.Application, **kwargs: Any) -> None:
        calls.append(kwargs)
        loop = kwargs.get("loop")
        if loop is not None:
            loop.close()

    monkeypatch.setattr(web, "run_app", fake_run_app)
    return calls


def test_services_run_on_uvloop_by_default(run_app_calls: list[dict[str, Any]]) -> None:
    http.run(web.Application(), ServiceSettings(port=0))
    assert isinstance(run_app_calls[0]["loop"], uvloop.Loop)


def test_the_standard_loop_when_asked(run_app_calls: list[dict[str, Any]]) -> None:
    http.run(web.Application(), ServiceSettings(port=0, RWASYNC_EVENT_LOOP="asyncio"))
    # aiohttp then makes the standard library's loop itself.
    assert run_app_calls[0]["loop"] is None
