"""`rwasync`, the operator CLI: a package of its own, which no service or library imports."""
