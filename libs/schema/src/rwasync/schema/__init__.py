"""rwasync contracts shared by every service: asset document, events, topology. Pure: no I/O."""
