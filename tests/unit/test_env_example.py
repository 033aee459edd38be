"""`.env.example` documents every setting of every process and every variable docker-compose.yml
interpolates, so an operator never has to read the code to find one (and `make run` copies it to
`.env`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from demo.settings import DemoSettings
from rwasync.feed_poller.settings import FeedPollerSettings
from rwasync.ingest_api.settings import IngestSettings
from rwasync.platform.settings import CommonSettings
from rwasync.pricing.settings import PricingSettings
from rwasync.reconciler.settings import ReconcilerSettings
from tests.support.deployment import compose_variables, env_names

pytestmark = pytest.mark.unit

EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"
SETTINGS: list[type[BaseSettings]] = [
    CommonSettings,
    IngestSettings,
    FeedPollerSettings,
    ReconcilerSettings,
    PricingSettings,
    DemoSettings,
]


def documented() -> set[str]:
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", EXAMPLE.read_text(), re.MULTILINE))


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: s.__name__)
def test_every_setting_is_documented(settings: type[BaseSettings]) -> None:
    assert env_names(settings) <= documented()


def test_every_compose_variable_is_documented() -> None:
    assert compose_variables() <= documented()


def test_nothing_documented_is_unknown() -> None:
    known = set().union(*(env_names(s) for s in SETTINGS)) | compose_variables()
    assert documented() <= known


def test_the_example_is_a_valid_settings_file_for_every_process() -> None:
    for settings in SETTINGS:
        loaded = settings(_env_file=EXAMPLE)  # type: ignore[call-arg]
        assert loaded.feed_allowed_networks == "127.0.0.0/8,::1"  # type: ignore[attr-defined]
