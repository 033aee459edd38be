"""`python -m rwasync.ingest_api`: run the provider push API."""

from rwasync.ingest_api.app import main

if __name__ == "__main__":
    main()
