"""`python -m gateway` is `licgate`."""

from gateway.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
