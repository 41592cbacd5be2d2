"""``python -m core``: the command line."""

import sys

from core import allocator

allocator.configure()  # before any array: they all come from this thread (see core.allocator)

from core.cli import main  # noqa: E402

sys.exit(main())
