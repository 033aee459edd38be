"""`python -m benchmarks.pricing`: sustained ticks/s end to end, push → SSE latency with many
subscribers, and the raw broker ceiling, in one run (see __main__)."""
