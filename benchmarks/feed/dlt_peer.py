"""The peer a team would otherwise pick: dlt loading the feed file into Postgres with
`write_disposition="merge"` and primary key `id`. Run by `benchmarks.feed` in dlt's own virtualenv:

    python dlt_peer.py FEED.json POSTGRES_DSN DATASET

Prints one JSON line: {"seconds", "rows", "max_rss_mb"}.
"""

import json
import resource
import sys
import time

import dlt


def main() -> None:
    path, dsn, dataset = sys.argv[1:4]
    began = time.monotonic()

    @dlt.resource(name="assets", write_disposition="merge", primary_key="id")
    def assets():  # type: ignore[no-untyped-def]
        with open(path, "rb") as feed:
            yield from json.load(feed)["assets"]

    pipeline = dlt.pipeline(
        pipeline_name=f"rwasync_bench_{dataset}",
        destination=dlt.destinations.postgres(credentials=dsn),
        dataset_name=dataset,
    )
    info = pipeline.run(assets())
    rows = pipeline.last_trace.last_normalize_info.row_counts.get("assets", 0)
    print(
        json.dumps(
            {
                "seconds": time.monotonic() - began,
                "rows": rows,
                "loads": len(info.loads_ids),
                "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


if __name__ == "__main__":
    main()
