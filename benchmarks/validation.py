"""CPU per asset of validating and normalising one asset document, call by call, in-process.

    .venv/bin/python -m benchmarks.validation [--rounds 5] [--generated 2000] [--profile FILE]
                                              [--realt FILE]

Two catalogues: a real provider's, RealT's public token list (a JSON array of RealT's token
records, given with `--realt`; its tokens are mapped to asset documents), and the feed
benchmark's generated ~1.5 KB assets. For each it times exactly what the two hot paths do per item:

- the feed poller (`rwasync.feeds.items.validate_record`): the fast path from the item's text
  (`valid_asset.common_shape_json`), else `jsonsafe.loads`, `parse_asset`, the normalised
  document and its canonical JSON (`normalized_canonical`) and its SHA-256;
- ingest-api's batch push (`documents.check_assets`, `acceptance.asset_upserted`):
  `valid_asset.validate_asset` (the fast path, else `parse_asset` and `normalized_canonical`) of a
  dict the body's parse produced, its hash, and the event.

Older code (without `valid_asset`) is measured as it was, for comparison. The share of the
catalogue the fast path takes is printed first.

Each figure is CPU (`process_time`) per asset, the best of `--rounds` passes over the catalogue.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import hashlib
import pstats
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from benchmarks.feed.catalogue import asset as generated_asset
from rwasync.feeds.items import validate_record
from rwasync.feeds.records import RawRecord, fingerprint
from rwasync.ingest_api import documents
from rwasync.ingest_api.acceptance import asset_upserted
from rwasync.schema import asset as schema_asset
from rwasync.schema import chains
from rwasync.schema.asset import (
    canonical_json,
    content_hash_hex,
    normalized_document,
    parse_asset,
)
from rwasync.schema.events import Arrival, EventSource
from rwasync.schema.jsonsafe import loads
from rwasync.schema.timestamps import timestamp_text

try:
    from rwasync.schema.valid_asset import common_shape, validate_asset
except ImportError:  # older code, measured for comparison
    common_shape = validate_asset = None  # type: ignore[assignment]

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
UPDATED_AT = timestamp_text(NOW - timedelta(days=3))


def _address(value: Any) -> str | None:
    return value if isinstance(value, str) and value.startswith("0x") else None


def realt_document(token: dict[str, Any]) -> dict[str, Any]:
    """A RealT token as the asset document its provider would send (README's nearest fields)."""
    chains = token["blockchainAddresses"]
    gnosis = _address(chains["xDai"]["contract"])
    ethereum = _address(chains["ethereum"]["contract"])
    place = token["property"]["location"]
    document: dict[str, Any] = {
        "id": token["token"]["id"],
        "updated_at": UPDATED_AT,
        "status": "active",
        "name": token["property"]["name"],
        "property_type": "single_family",
        "address": {
            "line1": token["property"]["shortName"],
            "city": place["city"],
            "region": place["state"],
            "country": "US",
        },
        "location": {"lat": place["lat"], "lon": place["lng"]},
        "token": {
            "symbol": token["token"]["name"],
            "chain": "xdai" if gnosis else "ethereum",
            "contract_address": gnosis or ethereum,
            "total_supply": token["token"]["supply"],
            "decimals": 18,
        },
        "price": {"amount": token["token"]["value"], "currency": "USD"},
        "rental": {"net_yearly": token["return"]["perYear"], "currency": "USD"},
        "media": [{"url": url, "kind": "image"} for url in token["property"]["images"][:100]],
        "attributes": {
            "apr": token["return"]["apr"],
            "url": token["property"]["url"],
            "ethereum_contract": ethereum,
        },
    }
    return document


def realt_catalogue(path: Path) -> list[bytes]:
    tokens = orjson.loads(path.read_bytes())
    return [orjson.dumps(realt_document(token)) for token in tokens]


def generated_catalogue(count: int) -> list[bytes]:
    base = NOW - timedelta(days=1)
    return [orjson.dumps(generated_asset(n, base=base)) for n in range(count)]


def _per_asset(work: Callable[[], object], items: int, rounds: int) -> float:
    """The best CPU µs per asset over `rounds` passes."""
    best = float("inf")
    for _ in range(rounds):
        # A first run meets each contract once: every round starts with no checksum cached.
        checksummed = getattr(chains, "_checksummed", None)
        if checksummed is not None:
            checksummed.cache_clear()
        began = time.process_time()
        work()
        best = min(best, time.process_time() - began)
    return best / items * 1e6


def measure(name: str, bodies: list[bytes], rounds: int) -> None:
    count = len(bodies)
    texts = [body.decode() for body in bodies]
    records = [
        RawRecord(index, fingerprint(b"j", body), text=text)
        for index, (body, text) in enumerate(zip(bodies, texts, strict=True))
    ]
    # ingest-api parses the whole body once; its items are the dicts of that parse.
    dicts = loads(b'{"assets": [' + b",".join(bodies) + b"]}")["assets"]
    assets = [parse_asset(item, now=NOW) for item in dicts]
    documents = [normalized_document(asset) for asset in assets]
    arrival = Arrival("prv_bench", EventSource.BATCH, NOW)
    valid = sum(1 for record in records if hasattr(validate_record(record, now=NOW), "document"))

    def each(call: Callable[[Any], object], inputs: Iterable[Any]) -> Callable[[], None]:
        items = list(inputs)
        return lambda: [call(item) for item in items] and None

    def ingest_item(item: Any) -> object:
        # documents.check_assets, then acceptance.asset_upserted (normalise, hash, the event)
        if validate_asset is None:  # older code: the models only
            return asset_upserted(parse_asset(item, now=NOW), arrival, NOW)  # type: ignore[arg-type]
        return asset_upserted(validate_asset(item, now=NOW), arrival, NOW)

    shortcut = getattr(schema_asset, "normalized_canonical", None)  # absent in older code
    fast_path = None
    if common_shape is not None:
        taken = sum(common_shape(item, now=NOW) is not None for item in dicts)
        print(f"\n{name}: the fast path takes {taken} of {count}")

        def fast_path(item: Any) -> object:
            return common_shape(item, now=NOW)

    steps: list[tuple[str, Callable[[], None]]] = [
        ("jsonsafe.loads(item text)", each(loads, texts)),
        ("parse_asset(dict)", each(lambda item: parse_asset(item, now=NOW), dicts)),
        *(
            [("valid_asset.common_shape(dict): the fast path", each(fast_path, dicts))]
            if fast_path is not None
            else []
        ),
        ("normalized_document(asset)", each(normalized_document, assets)),
        ("canonical_json(document)", each(canonical_json, documents)),
        (
            "content hash (sha256 of canonical_json)",
            each(lambda doc: hashlib.sha256(canonical_json(doc)).digest(), documents),
        ),
        ("content_hash_hex(document)", each(content_hash_hex, documents)),
        *(
            [("normalized_canonical(asset): document and its bytes", each(shortcut, assets))]
            if shortcut is not None
            else []
        ),
        (
            "feed: validate_record (all of the above)",
            each(lambda r: validate_record(r, now=NOW), records),
        ),
        ("ingest: parse + normalise + hash + event", each(ingest_item, dicts)),
        *_batch_steps(bodies),
    ]
    size = sum(len(body) for body in bodies) / count
    print(f"\n{name}: {count} assets ({valid} valid), {size:,.0f} bytes each as JSON")
    print("| call | CPU µs per asset |")
    print("|---|---|")
    for what, work in steps:
        print(f"| {what} | {_per_asset(work, count, rounds):.1f} |")


def _batch_steps(bodies: list[bytes]) -> list[tuple[str, Callable[[], None]]]:
    """ingest-api's reading of a whole batch body (bodies of up to 1,000 assets): the full path
    (`jsonsafe.loads`, the envelope, `check_assets`) and `checked_batch`, which takes a fast
    path for batches of valid documents of the common shape (absent in older code)."""
    batches = [
        b'{"assets": [' + b",".join(bodies[at : at + 1000]) + b"]}"
        for at in range(0, len(bodies), 1000)
    ]

    def full() -> None:
        for body in batches:
            documents.check_assets(documents.asset_batch(loads(body)), NOW)

    steps = [("ingest batch body, the full path: loads + envelope + check_assets", full)]
    checked_batch = getattr(documents, "checked_batch", None)
    if checked_batch is not None:

        def read() -> None:
            for body in batches:
                checked_batch(body, functools.partial(loads, body), NOW)

        steps.append(("ingest batch body: checked_batch", read))
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--generated", type=int, default=2000)
    parser.add_argument("--profile", help="write a cProfile of validate_record to this file")
    parser.add_argument("--realt", type=Path, help="RealT's token list (JSON array) to measure too")
    args = parser.parse_args()
    catalogues: list[tuple[str, list[bytes]]] = []
    if args.realt is not None:
        catalogues.append(("RealT catalogue", realt_catalogue(args.realt)))
    catalogues.append(("generated catalogue", generated_catalogue(args.generated)))
    for name, bodies in catalogues:
        measure(name, bodies, args.rounds)
    if args.profile:
        records = [
            RawRecord(index, b"", text=body.decode())
            for index, body in enumerate(catalogues[-1][1])
        ]
        profiler = cProfile.Profile()
        profiler.enable()
        for record in records:
            validate_record(record, now=NOW)
        profiler.disable()
        profiler.dump_stats(args.profile)
        pstats.Stats(args.profile).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
