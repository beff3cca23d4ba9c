"""The ``synthetic.hash`` kind: send fresh random content to hash-file and verify the SHA-256.

Fresh content each run, so a cache or a canned answer cannot pass. The request goes through
``http.exchange`` (session, 401 retry, expected status, conditions); then ``file_hash`` must
equal the SHA-256 hex digest of the UTF-8 content sent (SPEC §1). ``json_body`` is ignored.
"""

from __future__ import annotations

import hashlib
import json
import secrets

from exporter.config import CheckSpec
from exporter.probes import jsonbody
from exporter.probes.kinds.http import exchange
from exporter.probes.probe import Outcome, ProbeContext


def probe_hash(spec: CheckSpec, ctx: ProbeContext) -> Outcome:
    content = f"blocktrust synthetic check {secrets.token_hex(16)} at {ctx.clock.now().isoformat()}"
    body = json.dumps({"file_content": content}).encode()
    outcome, response = exchange(spec, ctx, body)
    if not outcome.ok or response is None:
        return outcome
    try:
        answer = jsonbody.parse(response.body)
    except jsonbody.JsonBodyError as exc:
        return _fail(outcome, "malformed_json", f"the body is {exc.reason}")
    file_hash = answer.get("file_hash") if isinstance(answer, dict) else None
    if not isinstance(file_hash, str):
        return _fail(outcome, "wrong_shape", "the answer has no file_hash string")
    if file_hash.lower() != hashlib.sha256(content.encode()).hexdigest():
        return _fail(outcome, "wrong_hash", "file_hash is not the SHA-256 of the content sent")
    return outcome


def _fail(outcome: Outcome, error: str, reason: str) -> Outcome:
    return Outcome(
        ok=False,
        error=error,
        reason=reason,
        status_code=outcome.status_code,
        bytes_read=outcome.bytes_read,
        seconds=outcome.seconds,
    )
