"""``python -m fran.data fetch mnist fashion-mnist [--dest DIR] [--check]``."""

from fran.data.fetch import main

if __name__ == "__main__":  # importing this module (e.g. pkgutil.walk_packages) runs nothing
    raise SystemExit(main())
