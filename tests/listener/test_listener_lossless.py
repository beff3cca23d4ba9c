"""Real anvil, the real ``listen`` process, both backends: events whose ``string`` carries NUL or bytes
that are not UTF-8 are stored and read back byte for byte; an event the store refuses for good (here a
constraint the database's owner added) is quarantined, the incident opens, the quarantine is counted,
and ingestion goes on: every other event before and after it is stored exactly."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import psycopg2
import pytest

from exporter.demo.devchain import DevChain
from exporter.store import open_store
from exporter.store.lossless import string_bytes
from tests.listener.conftest import query, stored_checkpoint, stored_keys
from tests.listener.log_emitter import NOTE_ABI, NoteEmitter
from tests.support.exporter_process import ExporterProcess

NOTES_ADDRESS = "0x00000000000000000000000000000000000A11cE"
NUL = b"signed\x00by\x00nobody"
NOT_UTF8 = b"caf\xe9 \xff\xfe \xed\xa0\x80"  # Latin-1, stray bytes, a CESU surrogate
POISON = b"poison"  # what the database's own constraint refuses
# A constraint (PostgreSQL) or trigger (SQLite) of the database's owner: a refusal no retry can fix.
REFUSE_POISON = {
    "postgresql": "ALTER TABLE events ADD CONSTRAINT no_poison CHECK (data->'args'->>'text' IS DISTINCT FROM 'poison')",
    "sqlite": "CREATE TRIGGER no_poison BEFORE INSERT ON events WHEN json_extract(NEW.data, '$.args.text') = 'poison' "
    "BEGIN SELECT RAISE(ABORT, 'no_poison'); END",
}


def _wait(predicate: Callable[[], bool], what: str, proc: ExporterProcess, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.proc.poll() is not None:
            raise AssertionError(f"listener exited ({proc.proc.returncode}) before {what}:\n{proc.read_log()}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{proc.read_log()}"
        time.sleep(0.05)


def _execute(store_url: str, statement: str) -> None:
    if store_url.startswith("sqlite:///"):
        with closing(sqlite3.connect(store_url[len("sqlite:///") :])) as lite:
            lite.execute(statement)
            lite.commit()
        return
    with closing(psycopg2.connect(store_url)) as pg, pg.cursor() as cur:
        cur.execute(statement)
        pg.commit()


def _all_keys(chain: DevChain) -> list[tuple[str, int, int, str]]:
    """(tx hash, log index, block, block hash) of every log of the followed contracts, in chain order:
    one raw eth_getLogs."""
    addresses = [*chain.addresses.values(), NOTES_ADDRESS]
    logs = chain.rpc("eth_getLogs", [{"fromBlock": "0x0", "toBlock": "latest", "address": addresses}])
    keys = [(g["transactionHash"], int(g["logIndex"], 16), int(g["blockNumber"], 16), g["blockHash"]) for g in logs]
    return sorted(keys, key=lambda key: (key[2], key[1], key[0]))


def _note_texts(store_url: str) -> dict[str, bytes]:
    """The ``text`` of every stored Note by transaction hash, through the read-back helper."""
    texts = {}
    for data, tx_hash in query(store_url, "SELECT data, tx_hash FROM events WHERE type = 'Note'"):
        body = json.loads(data) if isinstance(data, str) else data
        texts[tx_hash] = string_bytes(body["args"]["text"])
    return texts


@pytest.mark.slow
def test_any_bytes_are_stored_and_a_refused_event_is_quarantined_while_ingestion_goes_on(
    chain: DevChain, contracts_path: Path, store_url: str, tmp_path: Path
) -> None:
    backend = "sqlite" if store_url.startswith("sqlite") else "postgresql"
    document = json.loads(contracts_path.read_text())
    document["Notes"] = {"address": NOTES_ADDRESS, "abi": NOTE_ABI}
    contracts_path.write_text(json.dumps(document))
    notes = NoteEmitter(chain, NOTES_ADDRESS)
    chain.emit_each_event()
    sent = {notes.emit(text): text for text in (NUL, NOT_UTF8)}
    poisoned = notes.emit(POISON)
    sent[notes.emit(b"after the poison")] = b"after the poison"
    store = open_store(store_url)
    store.migrate()
    store.close()
    _execute(store_url, REFUSE_POISON[backend])
    config = tmp_path / "config.yaml"
    config.write_text(f"listener:\n  contracts_config: {contracts_path}\n  start_block: 0\n  poll_interval: 1s\n")
    env = {"DATABASE_URL": store_url, "POLYGON_RPC_URL": chain.rpc_url}
    with ExporterProcess(["listen", "--config", str(config)], env=env, cwd=tmp_path) as proc:
        head = chain.head()
        _wait(lambda: stored_checkpoint(store_url) == head, "the backlog stored", proc)
        assert _note_texts(store_url) == sent  # byte for byte, the poisoned one left out
        (raw_log, reason) = query(store_url, "SELECT raw_log, reason FROM quarantined_events")[0]
        assert json.loads(raw_log)["transactionHash"] == poisoned
        assert "no_poison" in reason
        _wait(lambda: bool(query(store_url, _OPEN_QUARANTINE_INCIDENT)), "the quarantine incident to open", proc)
        assert re.search(r"^blocktrust_listener_quarantined_events_total 1\.0$", proc.metrics(), re.M)

        # Ingestion goes on: a later event is stored, the incident stays open until an operator acts.
        later = notes.emit(NUL + b" again")
        chain.emit_each_event()
        head = chain.head()
        _wait(lambda: stored_checkpoint(store_url) == head, "the events after the quarantine", proc)
        assert _note_texts(store_url)[later] == NUL + b" again"
        everything = _all_keys(chain)
        assert any(key[0] == poisoned for key in everything)
        assert stored_keys(store_url) == [key for key in everything if key[0] != poisoned]
        assert query(store_url, _OPEN_QUARANTINE_INCIDENT) == [("crit",)]
        assert query(store_url, "SELECT COUNT(*) FROM quarantined_events") == [(1,)]

        # The operator deals with the row (here: drops it); the incident resolves at a following poll.
        _execute(store_url, "DELETE FROM quarantined_events")
        _wait(lambda: not query(store_url, _OPEN_QUARANTINE_INCIDENT), "the quarantine incident to resolve", proc)


_OPEN_QUARANTINE_INCIDENT = (
    "SELECT severity FROM monitor_incidents WHERE check_name = 'listener.quarantine' AND resolved_at IS NULL"
)
