"""``python -m exporter.demo.simulator``: the same as ``blocktrust-exporter simulate``."""

from exporter.demo.simulator.cli import main

raise SystemExit(main())
