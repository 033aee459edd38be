"""`python -m rwasync.reconciler`: run the reconciler."""

from rwasync.reconciler.app import main

if __name__ == "__main__":
    main()
