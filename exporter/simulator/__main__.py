"""``python -m exporter.simulator``: the same as ``blocktrust-exporter simulate``."""

from exporter.simulator.cli import main

raise SystemExit(main())
