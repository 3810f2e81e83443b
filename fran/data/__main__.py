"""``python -m fran.data fetch mnist fashion-mnist [--dest DIR] [--check]``."""

from fran.data.fetch import main

raise SystemExit(main())
