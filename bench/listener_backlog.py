"""Build the listener benchmark's backlog on anvil cheaply: >= 20,000 events over >= 20,000 blocks.

Used by the listener benchmark (issue 5, acceptance 7), importable with the repository on ``sys.path``
(``from bench.listener_backlog import BacklogSpec, start_backlog_chain``), and runnable alone to time it:

    .venv/bin/python bench/listener_backlog.py [--rounds 100] [--per-type 31] [--blocks-per-round 500]
                                               [--state var/bench/backlog-state.json]

Why it is cheap (the seed's set-up took 950 s here):
* each round is three transactions that emit ``per_type`` events of every one of the seven types
  (``emitBatch`` in each test contract, no storage writes), then one ``anvil_mine`` for the rest
  of the round's blocks: about 400 JSON-RPC calls for the whole backlog;
* anvil runs with ``--hardfork cancun --prune-history`` (``state_history=0``): under its
  defaults the cost of mining a block grows with the chain's length, and 20,000 empty blocks alone
  take minutes (see ``exporter.demo.devchain``);
* optionally the chain is dumped (``--dump-state``) and later loaded (``--load-state``) instead of
  being rebuilt; with the above, rebuilding is about as fast, so this is only a convenience.

Not a benchmark itself and not a test: it builds the chain and says what is on it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from exporter.demo.devchain import DevChain

SEVEN_TYPES = 7


@dataclass(frozen=True)
class BacklogSpec:
    """``rounds`` x (3 event transactions + mining up to ``blocks_per_round`` blocks)."""

    rounds: int = 100
    per_type: int = 31  # events of each of the 7 types per round: 100 x 31 x 7 = 21,700 events
    blocks_per_round: int = 500  # 100 x 500 = 50,000 blocks, as in the reference figures

    @property
    def events(self) -> int:
        return self.rounds * self.per_type * SEVEN_TYPES


@dataclass(frozen=True)
class Backlog:
    """What is on the chain: the backlog lies in blocks ``first_block..last_block`` inclusive."""

    spec: BacklogSpec
    first_block: int
    last_block: int
    events: int

    @property
    def blocks(self) -> int:
        return self.last_block - self.first_block + 1


def build_backlog(chain: DevChain, spec: BacklogSpec) -> Backlog:
    """Emit the backlog on ``chain`` (whose head is before it) and return where it lies."""
    first_block = chain.head() + 1
    for _ in range(spec.rounds):
        calls = chain.batch_calls(spec.per_type)
        for call in calls:
            chain.send(call)
        filler = spec.blocks_per_round - len(calls)  # each call was mined in its own block
        if filler > 0:
            chain.mine(filler)
    return Backlog(spec, first_block, chain.head(), spec.events)


def start_backlog_chain(
    workdir: Path, spec: BacklogSpec = BacklogSpec(), *, state: Path | None = None
) -> tuple[DevChain, Backlog]:
    """A running anvil holding the backlog; the caller stops the chain.

    With ``state``: load it if it was dumped for the same ``spec`` (its ``.meta.json`` says so),
    else build the backlog and dump it there when the chain stops.
    """
    meta_path = state.with_suffix(".meta.json") if state else None
    if state and meta_path and state.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("spec") == asdict(spec):
            chain = DevChain.start(workdir, load_state=state, state_history=0)
            return chain, Backlog(spec, meta["first_block"], meta["last_block"], meta["events"])
    chain = DevChain.start(workdir, dump_state=state, state_history=0)
    try:
        backlog = build_backlog(chain, spec)
    except BaseException:
        chain.stop()
        raise
    if state and meta_path:
        meta = {"spec": asdict(spec), **{k: v for k, v in asdict(backlog).items() if k != "spec"}}
        meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    return chain, backlog


def count_logs(chain: DevChain, backlog: Backlog) -> int:
    """Every log in the backlog's blocks, fetched in one raw ``eth_getLogs`` (anvil has no cap)."""
    logs = chain.rpc("eth_getLogs", [{"fromBlock": hex(backlog.first_block), "toBlock": hex(backlog.last_block)}])
    return len(logs)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=BacklogSpec.rounds)
    parser.add_argument("--per-type", type=int, default=BacklogSpec.per_type)
    parser.add_argument("--blocks-per-round", type=int, default=BacklogSpec.blocks_per_round)
    parser.add_argument("--workdir", type=Path, default=Path("var/bench/backlog"))
    parser.add_argument("--state", type=Path, help="dump the chain here, then time loading it back")
    args = parser.parse_args(argv)
    spec = BacklogSpec(args.rounds, args.per_type, args.blocks_per_round)
    if args.state and args.state.exists():
        args.state.unlink()

    started = time.monotonic()
    chain, backlog = start_backlog_chain(args.workdir / "build", spec, state=args.state)
    built = time.monotonic() - started
    try:
        found = count_logs(chain, backlog)
    finally:
        started = time.monotonic()
        chain.stop()  # writes the state dump, if any
        stopped = time.monotonic() - started
    print(f"built {backlog.events} events over {backlog.blocks} blocks in {built:.2f} s; eth_getLogs sees {found}")
    if args.state:
        size_mb = args.state.stat().st_size / 1e6
        started = time.monotonic()
        chain, loaded = start_backlog_chain(args.workdir / "load", spec, state=args.state)
        with chain:
            load_s = time.monotonic() - started
            found = count_logs(chain, loaded)
        print(f"dump (on stop) {stopped:.2f} s, {size_mb:.1f} MB; load {load_s:.2f} s; eth_getLogs sees {found}")
    return 0 if found == backlog.events else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
