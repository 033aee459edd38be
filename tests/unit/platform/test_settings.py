"""A service refuses a bad setting at start, with one line naming its variable and exit status 2:
a port past 65535 (it used to wrap around silently to port % 65536), a pool whose minimum passes
its maximum (it used to be retried for ever as if the database were down), any value out of its
bounds (it used to end in a pydantic traceback)."""

from __future__ import annotations

import pytest

from rwasync.ingest_api.settings import IngestSettings
from rwasync.platform.settings import load_settings
from rwasync.reconciler.settings import ReconcilerSettings

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("environment", "line"),
    [
        (
            {"RWASYNC_INGEST_PORT": "70000"},
            "error: RWASYNC_INGEST_PORT: Input should be less than or equal to 65535",
        ),
        (
            {"RWASYNC_INGEST_DB_POOL_MIN": "20", "RWASYNC_INGEST_DB_POOL_MAX": "10"},
            "error: RWASYNC_INGEST_DB_POOL_MIN (20) is greater than "
            "RWASYNC_INGEST_DB_POOL_MAX (10)",
        ),
        (
            {"RWASYNC_LOG_FORMAT": "xml"},
            "error: RWASYNC_LOG_FORMAT: Input should be 'console', 'json' or 'auto'",
        ),
    ],
)
def test_a_bad_setting_ends_the_process_with_one_line_naming_it(
    environment: dict[str, str],
    line: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as ended:
        load_settings(IngestSettings)
    assert ended.value.code == 2
    assert capsys.readouterr().err.splitlines() == [line]


def test_a_consumer_setting_is_named_with_its_service_prefix(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RWASYNC_RECONCILER_HAND_BACK_AFTER", "0")
    with pytest.raises(SystemExit):
        load_settings(ReconcilerSettings)
    assert capsys.readouterr().err == (
        "error: RWASYNC_RECONCILER_HAND_BACK_AFTER: Input should be greater than or equal to 1\n"
    )


def test_good_settings_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RWASYNC_INGEST_PORT", "65535")
    assert load_settings(IngestSettings).port == 65535
