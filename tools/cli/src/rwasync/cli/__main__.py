"""`python -m rwasync.cli`: the operator CLI."""

from rwasync.cli.app import main

if __name__ == "__main__":
    main()
