"""`GET /demo/prices.html`: a small page, with no external assets, showing a provider's prices
move live from the stream (the browser's EventSource with `?access_token=`). Public: it holds no
data; the reader token is given in the page's address fragment (never sent to the server with
the page request) or typed in."""

from __future__ import annotations

from importlib import resources

from aiohttp import web

PAGE = "prices.html"


def add_demo_page(app: web.Application) -> None:
    body = resources.files("rwasync.pricing").joinpath("static", PAGE).read_bytes()

    async def page(_: web.Request) -> web.Response:
        return web.Response(
            body=body,
            content_type="text/html",
            charset="utf-8",
            headers={
                "Cache-Control": "no-cache",
                "Content-Security-Policy": "default-src 'self'; style-src 'unsafe-inline'; "
                "script-src 'unsafe-inline'",
            },
        )

    app.router.add_get(f"/demo/{PAGE}", page)
