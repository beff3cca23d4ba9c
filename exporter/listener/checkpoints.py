"""The operator's view of the listener checkpoint: ``checkpoint show`` and ``checkpoint rewind``.

``show`` reads the checkpoint (block, hash, the recent hashes kept for reorg detection) and the
audit's cursor. ``rewind(store, N)`` deletes the events above block N and sets the checkpoint to N
(with the recent hashes at or below N) in one transaction (``Store.rewind``), so the next poll
re-ingests exactly the blocks after N. It takes the listener's leader lock for the duration and
refuses while a listener holds it: a running listener would otherwise commit over the rewind.
When N is not among the recent hashes the checkpoint keeps no hash (like a fresh start): the next
range is not linked to block N, which the operator chose as a block to trust.

Not for argument parsing or exit codes (``exporter.cli``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from exporter.listener.audit import AUDIT_CHECKPOINT
from exporter.listener.service import CHECKPOINT_NAME
from exporter.store.base import Checkpoint, Store


class RewindRefusedError(Exception):
    """The rewind was not done; ``bad_input``: the request itself is wrong (else: try again later)."""

    def __init__(self, message: str, *, bad_input: bool) -> None:
        super().__init__(message)
        self.bad_input = bad_input


@dataclass(frozen=True)
class CheckpointView:
    """What ``show`` prints: the listener's checkpoint (None: none yet) and the audit's cursor."""

    checkpoint: Checkpoint | None
    audit: Checkpoint | None

    def as_json(self) -> dict[str, Any]:
        """``{"name", "block_number", "block_hash", "recent": [{"number","hash","parent_hash"}],
        "audit_block_number"}``; numbers are null when there is none."""
        cp = self.checkpoint
        return {
            "name": CHECKPOINT_NAME,
            "block_number": cp.block_number if cp else None,
            "block_hash": (cp.block_hash or None) if cp else None,
            "recent": [{"number": r.number, "hash": r.hash, "parent_hash": r.parent_hash} for r in cp.recent]
            if cp
            else [],
            "audit_block_number": self.audit.block_number if self.audit else None,
        }

    def as_text(self) -> str:
        cp = self.checkpoint
        if cp is None:
            return "listener checkpoint: none yet (the listener has not stored a range)\n"
        lines = [f"listener checkpoint: block {cp.block_number} {cp.block_hash or '(no hash: not linked)'}"]
        lines.append(f"recent block hashes ({len(cp.recent)}, oldest first):")
        lines += [f"  {ref.number} {ref.hash}" for ref in cp.recent]
        audited = self.audit.block_number if self.audit else None
        if audited is None:
            lines.append("audit: not run yet")
        elif audited < 0:  # the cursor of a listener that starts at block 0: nothing re-read yet
            lines.append("audit: nothing re-read yet (it starts at block 0)")
        else:
            lines.append(f"audit: re-read up to block {audited}")
        return "\n".join(lines) + "\n"


def show(store: Store) -> CheckpointView:
    """The checkpoint and audit cursor as stored (``StoreError`` if the store does not answer)."""
    return CheckpointView(store.load_checkpoint(CHECKPOINT_NAME), store.load_checkpoint(AUDIT_CHECKPOINT))


def rewind(store: Store, to_block: int) -> tuple[Checkpoint, Checkpoint, int]:
    """Rewind to ``to_block``: returns (checkpoint before, checkpoint after, events deleted).

    Raises ``RewindRefusedError`` (bad input: negative, above the checkpoint, no checkpoint; not bad
    input: a listener holds the leader lock) and ``StoreError``."""
    if to_block < 0:
        raise RewindRefusedError(f"--to {to_block}: expected a block number >= 0", bad_input=True)
    if not store.try_acquire_leader(CHECKPOINT_NAME):
        raise RewindRefusedError(
            "a running listener holds the leader lock; stop every listener (run/listen) first, then rewind",
            bad_input=False,
        )
    try:
        before = store.load_checkpoint(CHECKPOINT_NAME)
        if before is None:
            raise RewindRefusedError("no listener checkpoint to rewind (nothing stored yet)", bad_input=True)
        if to_block > before.block_number:
            raise RewindRefusedError(
                f"--to {to_block} is above the checkpoint (block {before.block_number}): nothing to rewind",
                bad_input=True,
            )
        kept = tuple(ref for ref in before.recent if ref.number <= to_block)
        known = next((ref.hash for ref in kept if ref.number == to_block), "")
        after = Checkpoint(to_block, known, kept if known else ())
        deleted = store.rewind(CHECKPOINT_NAME, after)
        audit = store.load_checkpoint(AUDIT_CHECKPOINT)
        if audit is not None and audit.block_number > to_block:
            # The rewound blocks will be read again; let the audit read them again after that too.
            store.commit_blocks(AUDIT_CHECKPOINT, [], Checkpoint(to_block, known))
        return before, after, deleted
    finally:
        store.release_leader(CHECKPOINT_NAME)
