"""``python -m widenet.cli``: the ``widenet`` command."""

import sys

from widenet.cli import main

sys.exit(main())
