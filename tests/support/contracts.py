"""A ``contracts_config.json`` with the project's real ABIs at made-up addresses: enough for the
exporter to start its listener where no chain is needed (secrets, shutdown tests)."""

from __future__ import annotations

import json
from pathlib import Path

from exporter.demo.devchain import load_artifacts

CONTRACTS = ("IdentityNFT", "ProofRegistry", "FailSafe")


def write_fake_contracts_config(path: Path) -> Path:
    artifacts = load_artifacts()
    path.write_text(
        json.dumps(
            {
                name: {"address": "0x" + f"{n + 1:02x}" * 20, "abi": artifacts[name]["abi"]}
                for n, name in enumerate(CONTRACTS)
            }
        )
    )
    return path
