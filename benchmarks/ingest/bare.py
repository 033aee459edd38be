"""The HTTP ceiling: a bare aiohttp handler that reads and parses the same JSON as ingest-api
(`jsonsafe.loads`) and answers 202, with nothing else (no auth, validation, broker or database).

    .venv/bin/python -m benchmarks.ingest.bare PORT
"""

from __future__ import annotations

import sys
import uuid

from aiohttp import web

from rwasync.schema import jsonsafe


async def accept(request: web.Request) -> web.Response:
    jsonsafe.loads(await request.read())
    return web.json_response({"event_id": str(uuid.uuid4()), "status": "accepted"}, status=202)


def main() -> None:
    app = web.Application()
    app.router.add_route("*", "/v1/assets/{id}", accept)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
