"""`python -m annotune`: the same command line as the `annotune` script."""

from annotune.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
