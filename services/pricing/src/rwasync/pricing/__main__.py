"""`python -m rwasync.pricing`: run the pricing service."""

from rwasync.pricing.app import main

if __name__ == "__main__":
    main()
