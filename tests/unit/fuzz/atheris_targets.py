"""The fuzz targets of `test_hostile_parsers` under atheris (coverage-guided, libFuzzer): each
input must end in a result or the target's documented error; libFuzzer's `-timeout` bounds the
time per input and `-rss_limit_mb` the memory.

    .venv/bin/python -m tests.unit.fuzz.atheris_targets json -runs=100000 -timeout=5
    (targets: json, asset, feed, gzip; any libFuzzer flag after the target name)

`test_atheris_targets.py` runs each for a bounded number of inputs in the slow suite.
"""

from __future__ import annotations

import gzip
import sys
from collections.abc import Callable

import atheris

with atheris.instrument_imports(include=["rwasync"]):
    from rwasync.feeds.fetch import FetchFailed, FetchLimits
    from tests.unit.fuzz.test_hostile_parsers import (
        decode_gzip,
        parse_json,
        read_feed,
        validate_asset_body,
    )

MIB = 1024 * 1024
FORMATS = ("json", "jsonl", "csv")


def feed(data: bytes) -> None:
    if data:
        read_feed(FORMATS[data[0] % len(FORMATS)], data[1:])


def gzip_feed(data: bytes) -> None:
    if not data:
        return
    try:
        decode_gzip(data[1:], FetchLimits(max_decoded_bytes=MIB))
    except FetchFailed:
        return
    read_feed(FORMATS[data[0] % len(FORMATS)], gzip.decompress(data[1:].rstrip(b"\x00")))


TARGETS: dict[str, Callable[[bytes], None]] = {
    "json": parse_json,
    "asset": validate_asset_body,
    "feed": feed,
    "gzip": gzip_feed,
}


def main() -> None:
    name = sys.argv[1]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], TARGETS[name])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
