"""`python -m visualfinder` runs the same entry point as the `visualfinder` command."""

from visualfinder.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
