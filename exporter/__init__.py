"""blocktrust-exporter: monitors the Blocktrust API and follows its contracts on chain."""
