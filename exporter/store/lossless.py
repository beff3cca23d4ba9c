"""The one encoding that lets every event be stored as it is, on both backends (README: "Lossless strings").

PostgreSQL refuses NUL (U+0000) in ``text`` and ``jsonb``, and UTF-8 cannot carry a lone surrogate
(U+D800..U+DFFF); a Solidity ``string`` may hold any bytes at all, valid UTF-8 or not. So a string is
stored as itself when it can be, and otherwise as the tagged form ``{"$hex": "0x…"}``: the string's bytes
(UTF-8, a lone surrogate as its three surrogate-escape bytes) in lowercase hex. No decoded argument is a
JSON object (tuples become arrays), so the tagged form cannot be mistaken for a value. Both backends store
the same JSON, so a reader sees the same thing on either. ``original`` turns the tagged form back into
the original bytes. Not for the other columns: their values are validated where they are made.
"""

from __future__ import annotations

from typing import Any

HEX_TAG = "$hex"


def storable_text(text: str) -> bool:
    """Whether ``text`` can be stored as it is: no NUL and no lone surrogate."""
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def hex_form(raw: bytes) -> dict[str, str]:
    """The tagged form of ``raw``: ``{"$hex": "0x…"}``."""
    return {HEX_TAG: "0x" + raw.hex()}


def text_value(raw: bytes) -> str | dict[str, str]:
    """The stored form of an ABI ``string``'s bytes: the text when it is valid UTF-8 without NUL,
    else the tagged form (so not one byte is lost)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return hex_form(raw)
    return text if "\x00" not in text else hex_form(raw)


def storable(value: Any) -> Any:
    """``value`` (plain JSON data) with every string that cannot be stored replaced by its tagged form.

    A key that cannot be stored is replaced by ``"$hex:0x…"`` (keys are ABI parameter names, which
    Solidity keeps to identifiers; this only guards against a hand-written ABI)."""
    if isinstance(value, str):
        return value if storable_text(value) else hex_form(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, dict):
        return {_storable_key(k): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    return value


def _storable_key(key: Any) -> Any:
    if not isinstance(key, str) or storable_text(key):
        return key
    return f"{HEX_TAG}:0x{key.encode('utf-8', 'surrogatepass').hex()}"


def is_hex_form(value: Any) -> bool:
    """Whether ``value`` is the tagged form written by ``hex_form``."""
    return (
        isinstance(value, dict)
        and len(value) == 1
        and isinstance(value.get(HEX_TAG), str)
        and value[HEX_TAG].startswith("0x")
    )


def original(value: Any) -> Any:
    """The read-back helper: ``value`` as stored (JSON data read from ``events.data``) with every tagged
    form turned back into the original ``bytes``; everything else unchanged.

    ``original(row["args"]["note"])`` is ``bytes`` when the string was stored tagged, ``str`` when not;
    ``string_bytes`` gives the bytes either way. Raises ``ValueError`` for a tagged form that is not hex."""
    if is_hex_form(value):
        return bytes.fromhex(value[HEX_TAG][2:])
    if isinstance(value, dict):
        return {_original_key(k): original(v) for k, v in value.items()}
    if isinstance(value, list):
        return [original(v) for v in value]
    return value


def _original_key(key: str) -> str:
    prefix = HEX_TAG + ":0x"
    if not key.startswith(prefix):
        return key
    return bytes.fromhex(key[len(prefix) :]).decode("utf-8", "surrogatepass")


def string_bytes(value: str | dict[str, str]) -> bytes:
    """The bytes of a stored ABI ``string`` argument, tagged or not (the inverse of ``text_value``)."""
    restored = original(value)
    if isinstance(restored, bytes):
        return restored
    if isinstance(restored, str):
        return restored.encode("utf-8", "surrogatepass")
    raise ValueError(f"not a stored string: {value!r}")
