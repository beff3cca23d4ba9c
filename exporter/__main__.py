"""``python -m exporter``: the same as the ``blocktrust-exporter`` command."""

import sys

from exporter.cli import main

sys.exit(main())
