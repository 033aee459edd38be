"""The live price page in a real headless Chromium (Debian's chromium and chromedriver, which
`make test` installs when missing): it subscribes with the reader token from its address fragment
and shows each price pushed through the broker as it arrives."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from tests.integration.pricing.conftest import READER, Push
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
)


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.fail(
            "chromium and chromedriver are needed: run scripts/ensure-chromium.sh (make test does)",
            pytrace=False,
        )
    with tempfile.TemporaryDirectory(prefix="rwasync-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        chrome = webdriver.Chrome(options=options, service=Service(executable_path=driver))
        try:
            yield chrome
        finally:
            chrome.quit()


def cells(chrome: webdriver.Chrome) -> dict[str, str]:
    rows = chrome.find_elements(By.CSS_SELECTOR, "#prices tr")
    return {
        row.get_attribute("data-asset") or "": row.find_elements(By.TAG_NAME, "td")[1].text
        for row in rows
    }


async def wait_for(probe: Callable[[], bool], what: str) -> None:
    await eventually(lambda: asyncio.to_thread(probe), bool, timeout=30, what=what)


async def open_page(
    browser: webdriver.Chrome, pricing: Any, provider_id: str, token: str, status: str, what: str
) -> None:
    """The page served by a pricing service, subscribed from its address fragment, once its
    status line starts with `status`."""
    client = await pricing()
    url = f"http://127.0.0.1:{client.server.port}/demo/prices.html"
    await asyncio.to_thread(browser.get, f"{url}#provider_id={provider_id}&access_token={token}")
    await wait_for(lambda: browser.find_element(By.ID, "status").text.startswith(status), what)


async def test_the_page_shows_prices_as_they_move(
    pricing: Any, push: Push, provider_id: str, browser: webdriver.Chrome
) -> None:
    await open_page(browser, pricing, provider_id, READER, "live", "the page connected")
    await push(provider_id, [("det-1", "52.10"), ("det-2", "14")])
    await wait_for(lambda: cells(browser) == {"det-1": "52.1 USD", "det-2": "14 USD"}, "first")
    await push(provider_id, [("det-1", "53.25")])
    await wait_for(lambda: cells(browser).get("det-1") == "53.25 USD", "the moved price")
    count = await asyncio.to_thread(lambda: browser.find_element(By.ID, "count").text)
    assert count == "3 price events"


async def test_the_page_says_when_the_stream_refuses_its_token(
    pricing: Any, provider_id: str, browser: webdriver.Chrome
) -> None:
    """A 401 ends an EventSource for good: the page must not promise a retry that never comes."""
    await open_page(
        browser, pricing, provider_id, "bogus", "refused by the server", "the page said so"
    )


async def test_a_new_address_fragment_subscribes_anew(
    pricing: Any, push: Push, provider_id: str, browser: webdriver.Chrome
) -> None:
    """Only the fragment changing does not reload the page: it kept showing the old stream as
    live (a price trial). Now it subscribes with the new one and starts a new table."""
    await open_page(browser, pricing, provider_id, READER, "live", "the page connected")
    await push(provider_id, [("det-1", "52.10")])
    await wait_for(lambda: cells(browser) == {"det-1": "52.1 USD"}, "the first price")
    await asyncio.to_thread(
        browser.execute_script,
        "location.hash = arguments[0]",
        f"provider_id={provider_id}&access_token=bogus",
    )
    await wait_for(
        lambda: browser.find_element(By.ID, "status").text.startswith("refused by the server"),
        "the page subscribed with the new token",
    )
    assert cells(browser) == {}


async def test_a_fragment_naming_another_provider_without_a_token_ends_the_old_stream(
    pricing: Any, push: Push, provider_id: str, browser: webdriver.Chrome
) -> None:
    """It kept the old stream, live, beside the new provider's id (hostile trial)."""
    await open_page(browser, pricing, provider_id, READER, "live", "the page connected")
    await asyncio.to_thread(
        browser.execute_script, "location.hash = arguments[0]", "provider_id=prv_other"
    )
    await wait_for(
        lambda: browser.find_element(By.ID, "status").text.startswith("enter the reader token"),
        "the page ended the old stream",
    )
    await push(provider_id, [("det-1", "52.10")])
    await asyncio.sleep(1)
    assert cells(browser) == {}
