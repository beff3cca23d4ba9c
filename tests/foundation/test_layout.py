"""The package's shape, read from its imports (ast): no cycles, and no lower layer importing a higher one.

The layers, bottom up (a module may import its own layer's and lower layers' modules):

0. ``config`` (plain data: stdlib, pydantic and yaml only), ``clock``, ``redact``, ``metrics``
1. ``store`` (knows no feature, not even a check name)
2. the features: ``probes``, ``listener``, ``alerting``, ``slo``, ``rules``, ``retention``, and the
   process parts ``logs``, ``banner``, ``scheduler``, ``server``, ``web`` (its TLS and basic auth),
   ``progress`` (round and catch-up lines); no feature imports another
3. ``runtime`` (the wiring), and ``status`` (the status page, which reads several features' outputs
   and which only ``runtime`` imports)
4. ``cli`` and ``demo`` (the demo kit, which only the ``demo`` and ``simulate`` commands import,
   inside the functions that run them)

Within a layer-2 feature, ``alerting/engine.py`` (decisions) reaches no channel nor the sender, not
even through another module. Imports by name only: ``importlib``/``__import__`` would hide from these
rules, so the package has none.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from exporter.config import HEARTBEAT_CHECK, default_checks
from tests.support.contracts import write_fake_contracts_config

PACKAGE = Path(__file__).resolve().parents[2] / "exporter"

LAYERS: dict[str, int] = {
    "exporter.config": 0,
    "exporter.clock": 0,
    "exporter.redact": 0,
    "exporter.metrics": 0,
    "exporter.store": 1,
    "exporter.probes": 2,
    "exporter.listener": 2,
    "exporter.alerting": 2,
    "exporter.slo": 2,
    "exporter.rules": 2,
    "exporter.retention": 2,
    "exporter.logs": 2,
    "exporter.banner": 2,
    "exporter.scheduler": 2,
    "exporter.server": 2,
    "exporter.web": 2,
    "exporter.progress": 2,
    "exporter.replicas": 2,
    "exporter.promrule": 2,
    "exporter.runtime": 3,
    "exporter.status": 3,
    "exporter.cli": 4,
    "exporter.demo": 4,
    "exporter.__main__": 4,
}
CONFIG_MAY_IMPORT = {"__future__", "pydantic", "yaml"}
DEMO_COMMANDS = {"cmd_demo", "cmd_simulate"}  # the functions of exporter.cli that may import exporter.demo
DYNAMIC_IMPORTS = {"import_module", "__import__"}


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name
    imported: str  # dotted module name (a submodule when ``from package import submodule``)
    function: str | None  # the function the import statement is in; None at module level
    line: int
    dynamic: bool = False  # importlib.import_module / __import__ (imported: its constant argument, if any)

    def __str__(self) -> str:
        where = f" in {self.function}()" if self.function else ""
        return f"{self.importer}:{self.line} imports {self.imported}{where}"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _functions_by_node(tree: ast.AST) -> dict[int, str]:
    """id(node) -> the name of the outermost function it is in."""
    inside: dict[int, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and id(node) not in inside:
            for inner in ast.walk(node):
                inside.setdefault(id(inner), node.name)
    return inside


def imports_of(name: str, source: str, *, is_package: bool = False) -> Iterator[Import]:
    """Every import of module ``name`` whose text is ``source``, dynamic ones included."""
    tree = ast.parse(source)
    functions = _functions_by_node(tree)
    for node in ast.walk(tree):
        function = functions.get(id(node))
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(name, alias.name, function, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = name if is_package else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{node.module}" if node.module else package
            else:
                base = node.module or ""
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield Import(name, submodule if submodule in MODULES else base, function, node.lineno)
        elif isinstance(node, ast.Call):
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if called in DYNAMIC_IMPORTS:
                first = node.args[0] if node.args else None
                target = first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else "?"
                yield Import(name, target, function, node.lineno, dynamic=True)


IMPORTS = [
    imp
    for name, path in MODULES.items()
    for imp in imports_of(name, path.read_text(), is_package=path.name == "__init__.py")
]


def _layer_of(module: str) -> tuple[str, int]:
    if module == "exporter":
        return module, 0  # the package's docstring only
    for prefix in sorted(LAYERS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return prefix, LAYERS[prefix]
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")


def _graph(imports: list[Import]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if imp.imported.startswith("exporter") and imp.imported != imp.importer:
            graph.setdefault(imp.importer, set()).add(imp.imported)
    return graph


# ------------------------------------------------------------------ the rules: each lists its breaches
def import_cycles(imports: list[Import]) -> list[str]:
    graph = _graph(imports)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []
    cycles: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return cycles


def layer_breaches(imports: list[Import]) -> list[str]:
    """A module importing a higher layer, or a feature importing another (this covers the store too)."""
    wrong = []
    for imp in imports:
        if not imp.imported.startswith("exporter.") or imp.imported == "exporter":
            continue
        (own, own_layer), (other, other_layer) = _layer_of(imp.importer), _layer_of(imp.imported)
        if own != other and (other_layer > own_layer or other_layer == own_layer == 2):
            wrong.append(str(imp))
    return wrong


def config_breaches(imports: list[Import]) -> list[str]:
    allowed = set(sys.stdlib_module_names) | CONFIG_MAY_IMPORT
    return [
        str(imp)
        for imp in imports
        if imp.importer.startswith("exporter.config")
        and not imp.imported.startswith("exporter.config")
        and imp.imported.split(".")[0] not in allowed
    ]


def engine_breaches(imports: list[Import]) -> list[str]:
    """What the alert engine reaches, directly or through other modules, of the delivery side."""
    delivery = ("exporter.alerting.channels", "exporter.alerting.notifier", "exporter.alerting.sender")
    graph, reached, todo = _graph(imports), set(), ["exporter.alerting.engine"]
    while todo:
        for target in graph.get(todo.pop(), ()):
            if target not in reached:
                reached.add(target)
                todo.append(target)
    return sorted(module for module in reached if module.startswith(delivery))


def demo_breaches(imports: list[Import]) -> list[str]:
    return [
        str(i)
        for i in imports
        if i.imported.startswith("exporter.demo")
        and not i.importer.startswith("exporter.demo")
        and not (i.importer == "exporter.cli" and i.function in DEMO_COMMANDS)
    ]


def dynamic_imports(imports: list[Import]) -> list[str]:
    return [f"{i} (dynamically)" for i in imports if i.dynamic]


RULES = [import_cycles, layer_breaches, config_breaches, engine_breaches, demo_breaches, dynamic_imports]


# ------------------------------------------------------------------------------------ tests
def test_every_module_has_a_layer_and_every_folder_is_a_package() -> None:
    for module in MODULES:
        _layer_of(module)
    folders = {path.parent for path in MODULES.values()} - {PACKAGE}
    assert sorted(str(f) for f in folders if not (f / "__init__.py").exists()) == []


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.__name__)
def test_the_package_keeps_the_rule(rule: Callable[[list[Import]], list[str]]) -> None:
    assert rule(IMPORTS) == []


@pytest.mark.parametrize(
    ("module", "source", "rule"),
    [
        ("exporter.store.base", "from exporter.runtime import Runtime", import_cycles),
        ("exporter.probes.runner", "from exporter.alerting.engine import AlertEngine", layer_breaches),
        ("exporter.clock", "from exporter.store import Store", layer_breaches),
        ("exporter.store.sql", "from exporter.listener import Listener", layer_breaches),
        ("exporter.store.sql", "from ..probes import conditions", layer_breaches),
        ("exporter.config.models", "from exporter.store import open_store", config_breaches),
        ("exporter.config.checks", "import requests", config_breaches),
        ("exporter.alerting.engine", "from exporter.alerting.channels import slack", engine_breaches),
        ("exporter.alerting.engine", "from exporter.alerting import notifier", engine_breaches),
        ("exporter.alerting.ledger", "from exporter.alerting.sender import HttpSender", engine_breaches),
        ("exporter.runtime", "def f():\n    from exporter.demo.devchain import DevChain", demo_breaches),
        ("exporter.cli", "from exporter.demo.simulator import cli", demo_breaches),
        ("exporter.cli", "def cmd_run():\n    from exporter.demo.runner import run", demo_breaches),
        ("exporter.runtime", "import importlib\nimportlib.import_module('exporter.demo')", demo_breaches),
        ("exporter.probes.runner", "__import__(name)", dynamic_imports),
    ],
)
def test_each_rule_catches_a_breach(module: str, source: str, rule: Callable[[list[Import]], list[str]]) -> None:
    """The rules can fail: one bad import added to an otherwise clean package breaks each."""
    added = list(imports_of(module, source, is_package=MODULES[module].name == "__init__.py"))
    assert rule(IMPORTS + added) != []


def test_the_store_names_no_check() -> None:
    names = {HEARTBEAT_CHECK, *(spec.name for spec in default_checks())}
    for module, path in MODULES.items():
        if module.startswith("exporter.store"):
            tree = ast.parse(path.read_text())
            literals = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
            assert not literals & names, f"{module} names checks: {sorted(literals & names)}"


RUN_PROBE = """
import json, sys
from exporter import cli
from exporter.runtime import build_runtime
args = cli.build_parser().parse_args(["run", "--config", "/dev/null"])
args.config_given = True
runtime = build_runtime(cli.load(args))
print(json.dumps({"parts": runtime.parts, "modules": sorted(sys.modules)}))
runtime.store.close()
"""


def test_run_does_not_import_the_demo_kit(tmp_path: Path) -> None:
    """What ``blocktrust-exporter run`` loads (its command line, then the runtime with every part on)
    includes neither the simulator nor the dev chain."""
    write_fake_contracts_config(tmp_path / "contracts_config.json")  # where listener.contracts_config points
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(PACKAGE.parent),
        "DATABASE_URL": f"sqlite:///{tmp_path}/store.db",
        "API_BASE": "http://127.0.0.1:9/",
        "JWT_MONITOR_EMAIL": "monitor@example.org",
        "JWT_MONITOR_PASS": "not-a-real-password",
        "POLYGON_RPC_URL": "http://127.0.0.1:9/",
    }
    proc = subprocess.run(
        [sys.executable, "-c", RUN_PROBE],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.splitlines()[-1])
    assert report["parts"] == {"alerts": True, "checks": True, "listener": True, "slo": True}
    assert "exporter.cli" in report["modules"] and "exporter.listener.service" in report["modules"]
    assert [m for m in report["modules"] if m.startswith("exporter.demo")] == []
