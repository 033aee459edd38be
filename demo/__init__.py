"""The demo provider that `make run` starts next to the services: it hosts a sample feed and
pushes asset changes and price ticks, so a newcomer sees data flow through the whole system."""
