"""How deep a reorg the listener rolls back before it halts: ``listener.max_reorg_depth`` by default.

An explicit ``listener.max_reorg_depth`` always wins. Otherwise the depth follows the chain the
node serves (``eth_chainId``, read once at start) from ``REORG_DEPTH_BY_CHAIN``, and is raised to
the node's own finality distance (``latest`` minus the ``finalized`` block tag, read at start) when
the node serves that tag and the distance is larger: a block the chain itself does not call final
may still be reorganised. Chains not in the table start from ``DEFAULT_REORG_DEPTH``.

The table and its sources are in the README ("Reorg depth by chain"); each entry says why.

Pure, but for ``resolve_reorg_depth``, which takes the two reads as callables.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_REORG_DEPTH = 64  # a chain the table does not know (the listener's default before chain ids)

REORG_DEPTH_BY_CHAIN: dict[int, int] = {
    # Ethereum mainnet, Sepolia, Holesky: final after 2 epochs (64 slots); Ponder counts 65. Twice that.
    1: 128,
    11155111: 128,
    17000: 128,
    # Polygon PoS, Amoy, Mumbai: 120- and 157-block reorgs happened (before milestones); Ponder counts
    # 200 blocks, graph-node's ETHEREUM_REORG_THRESHOLD is 250.
    137: 256,
    80002: 256,
    80001: 256,
    # Arbitrum One, Nova, Sepolia: Ponder counts 240.
    42161: 256,
    42170: 256,
    421614: 256,
    # OP Mainnet, Base and their Sepolias: OP-stack unsafe-head reorgs are short (Ponder assumes 30).
    10: 64,
    8453: 64,
    11155420: 64,
    84532: 64,
    # BNB Smart Chain and its testnet: fast finality (BEP-126) finalizes within a few blocks.
    56: 64,
    97: 64,
    # anvil / hardhat: local chains reorganise only on request; anvil's finalized tag is head - 64.
    31337: 64,
}


@dataclass(frozen=True)
class ReorgDepth:
    """The depth in use, and what it came from (for the log line at start and the status)."""

    blocks: int
    chain_id: int | None
    source: str  # "configured", "chain <id>", "finalized tag", "default"


def default_reorg_depth(chain_id: int | None, finality_distance: int | None) -> ReorgDepth:
    """The depth for ``chain_id`` (None: unknown), raised to ``finality_distance`` (``latest`` minus
    ``finalized``, None when the node does not serve the tag) when that is larger."""
    by_chain = REORG_DEPTH_BY_CHAIN.get(chain_id) if chain_id is not None else None
    blocks = by_chain if by_chain is not None else DEFAULT_REORG_DEPTH
    source = f"chain {chain_id}" if by_chain is not None else "default"
    if finality_distance is not None and finality_distance > blocks:
        return ReorgDepth(finality_distance, chain_id, "finalized tag")
    return ReorgDepth(blocks, chain_id, source)


def resolve_reorg_depth(
    configured: int | None, chain_id: Callable[[], int], finality_distance: Callable[[], int | None]
) -> ReorgDepth:
    """The configured depth, or ``default_reorg_depth`` of what the node says. ``chain_id`` and
    ``finality_distance`` read the node (their RPC errors propagate); the second is only called
    when no depth is configured."""
    chain = chain_id()
    if configured is not None:
        return ReorgDepth(configured, chain, "configured")
    return default_reorg_depth(chain, finality_distance())
