"""Reading the files a user gives the exporter: strict UTF-8 text, and YAML that refuses a key given
twice. Shared by the configuration file, ``X_FILE`` secrets, ``contracts_config.json`` and the web
configuration file (``exporter.web``), so that each says the same one line for the same mistake.
"""

from __future__ import annotations

from collections.abc import Iterator

import yaml

from exporter.config.errors import ConfigError

KeyPath = tuple[str | int, ...]


def decode_text(data: bytes, where: str) -> str:
    """``data`` as UTF-8 text; ``ConfigError("<where>: not UTF-8 text ...")`` naming the first bad byte's
    offset (never its value: the file may hold a secret). A UTF-8 byte order mark is dropped."""
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
            hint = "it looks like UTF-16 (it starts with a UTF-16 byte order mark)"
        else:
            hint = f"the first byte that is not UTF-8 is at offset {exc.start}"
        raise ConfigError(f"{where}: not UTF-8 text: {hint}; save it as UTF-8") from None


def key_path(path: KeyPath) -> str:
    """``("checks", "items", 0, "name")`` as ``checks.items[0].name``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + part
    return out


def yaml_children(node: yaml.Node, path: KeyPath = ()) -> Iterator[tuple[KeyPath, yaml.Node]]:
    """Every value node under ``node`` with its key path (mapping values by their key's text, list items
    by index), each once: an alias shares its anchor's node, and may even contain it (``a: &x [*x]``).
    Mapping keys themselves are not yielded."""
    seen = {id(node)}
    pending: list[tuple[KeyPath, yaml.Node]] = [(path, node)]
    while pending:
        where, parent = pending.pop()
        if isinstance(parent, yaml.MappingNode):
            pairs = [((*where, str(k.value)) if isinstance(k, yaml.ScalarNode) else where, v) for k, v in parent.value]
        elif isinstance(parent, yaml.SequenceNode):
            pairs = [((*where, index), item) for index, item in enumerate(parent.value)]
        else:
            continue
        for child_path, child in pairs:
            if id(child) not in seen:
                seen.add(id(child))
                yield child_path, child
                pending.append((child_path, child))


def _refuse_duplicate_keys(node: yaml.Node, source: str) -> None:
    """A key given twice in one mapping (a whole section too) is an error: YAML would keep the last."""
    for where, mapping in [((), node), *yaml_children(node)]:
        if not isinstance(mapping, yaml.MappingNode):
            continue
        first_line: dict[str, int] = {}
        for key, _value in mapping.value:
            if not isinstance(key, yaml.ScalarNode) or key.value == "<<":  # merge keys may repeat
                continue
            name, line = str(key.value), key.start_mark.line + 1
            if name in first_line:
                raise ConfigError(
                    f"{source}:{line}: {key_path((*where, name))}: duplicate key (first at line {first_line[name]})"
                )
            first_line[name] = line


class YamlSyntaxError(ConfigError):
    """Text that is not YAML; ``line`` (1-based) where the parser gave up, when it says."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.line = line


def _yaml_error(exc: yaml.YAMLError, source: str) -> YamlSyntaxError:
    mark = getattr(exc, "problem_mark", None)
    where = f"{source}:{mark.line + 1}" if mark is not None else source
    problem = getattr(exc, "problem", None) or "invalid YAML"
    return YamlSyntaxError(f"{where}: invalid YAML: {problem}", mark.line + 1 if mark is not None else None)


def compose_yaml(text: str, source: str) -> yaml.Node | None:
    """The one YAML document in ``text`` as nodes (None when empty), every mapping's keys unique.
    Raises ``ConfigError`` (``<source>:<line>: ...``) for bad YAML or a duplicate key."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, source) from None
    finally:
        loader.dispose()
    if root is not None:
        _refuse_duplicate_keys(root, source)
    return root


def construct_yaml(root: yaml.Node | None, source: str) -> object:
    """The Python value of nodes from ``compose_yaml`` (safe types only)."""
    if root is None:
        return None
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(root)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, source) from None
    finally:
        loader.dispose()


def parse_yaml(text: str, source: str) -> object:
    """``compose_yaml`` then ``construct_yaml``: safe YAML without duplicate keys."""
    return construct_yaml(compose_yaml(text, source), source)
