"""`python -m rwasync.feed_poller`: run the feed poller."""

from rwasync.feed_poller.app import main

if __name__ == "__main__":
    main()
