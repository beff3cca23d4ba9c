"""The command line: arguments and commands. Running the exporter is ``runtime.py``; the demo
kit (``exporter.demo``) is imported only by the ``demo`` and ``simulate`` commands.

Exit codes: 0 success, 1 a runtime failure (store unreachable for ``migrate``, port taken, a channel
refusing ``notify-test``'s notice, a check failing ``check``), 2 bad input (configuration, arguments).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import NoReturn

import requests
import yaml
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from exporter.alerting.dependencies import check_dependencies
from exporter.alerting.notifier import channels_from_settings, retry_policy
from exporter.alerting.sender import HttpSender
from exporter.alerting.trial import send_trial
from exporter.banner import exporter_version
from exporter.clock import SystemClock
from exporter.config import DEFAULT_CONFIG_PATH, Config, ConfigError, load_config, parse_duration
from exporter.config.checks import LISTENER_CHECKS
from exporter.config.files import decode_text
from exporter.listener import checkpoints
from exporter.listener.contracts import load_contracts
from exporter.logs import setup_logging
from exporter.metrics import Metrics
from exporter.probes.chain import resolve_view_calls
from exporter.probes.runner import resolve_checks, run_one, validate_conditions
from exporter.promrule import RuleFileError, prometheus_rule
from exporter.redact import Redactor
from exporter.rules import render_explanation, render_rules
from exporter.runtime import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    ExitError,
    chain_checks_reader,
    event_rules,
    make_store,
    run_parts,
    serve,
    web_security,
)
from exporter.slo import add_report_arguments, report_command
from exporter.store import SchemaMissingError, StoreError


# ------------------------------------------------------------------------------ helpers
def load(
    args: argparse.Namespace,
    *,
    with_checks: bool = True,
    with_contracts: bool = True,
    env: Mapping[str, str] | None = None,
) -> Config:
    """The configuration named by ``--config``; the default file may be absent (defaults + env).
    ``with_checks``: also validate the checks (not for commands that never run them);
    ``with_contracts``: also validate ``contracts_config.json`` when the listener is on;
    ``env``: the environment to read (default ``os.environ``)."""
    path: str | None = args.config
    if path == DEFAULT_CONFIG_PATH and not os.path.exists(path) and not args.config_given:
        path = None
    try:
        config = load_config(path, env)
        # The configuration keeps conditions as text; their language (and its errors) is the probes'.
        checks = resolve_checks(config) if with_checks else None
        if checks is not None:
            # Dependencies are the alert engine's (exporter.alerting.dependencies): a cycle fails here.
            check_dependencies(checks, config.source)
        else:
            validate_conditions(config)
        if with_contracts and config.listener.enabled and config.listener.rpc_endpoints:
            # Fail at start (and in check-config) rather than on the first poll.
            load_contracts(config.listener.contracts_config, config.listener.event_types)
        if with_contracts:
            event_rules(config)  # bad CEL, an unknown event or template field: refused at start
        if with_contracts and checks:
            resolve_view_calls(config, checks)  # each eth_call check's contract and function
    except ConfigError as exc:
        raise ExitError(str(exc), EXIT_USAGE) from None
    return config


def effective_config_yaml(config: Config) -> str:
    """The configuration as YAML with every secret replaced by ``***`` (never the value)."""
    tree = config.model_dump(mode="json", by_alias=True)

    def mask(node: object) -> object:
        if isinstance(node, dict):
            return {k: mask(v) for k, v in node.items()}
        if isinstance(node, list):
            return [mask(v) for v in node]
        # pydantic renders a set SecretStr as a run of asterisks in JSON mode
        if isinstance(node, str) and node and set(node) == {"*"}:
            return "***"
        return node

    # Belt and braces: whatever a field holds (a password inside api.base_url, say) is masked too.
    return Redactor(config.secrets())(yaml.safe_dump(mask(tree), sort_keys=False, allow_unicode=True))


def with_listen(config: Config, listen: str | None, web_config_file: str | None = None) -> Config:
    """``config`` with the command line's ``--listen`` and ``--web.config.file`` (which win over the file)."""
    if not listen and not web_config_file:
        return config
    tree = config.model_dump(by_alias=True)
    if web_config_file:
        tree["server"]["web_config_file"] = web_config_file
    if listen:
        tree["server"]["listen"] = listen
    try:
        return Config.model_validate(tree)
    except ValidationError as exc:
        problem = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
        raise ExitError(f"--listen: {problem}", EXIT_USAGE) from None


def _serving_config(args: argparse.Namespace, *, with_checks: bool = True) -> Config:
    return with_listen(load(args, with_checks=with_checks), args.listen, args.web_config_file)


def cmd_run(args: argparse.Namespace) -> int:
    config = _serving_config(args)
    log_format = args.log_format or config.log.format
    redactor = Redactor(config.secrets())  # one for the logs and every other output, JWT included
    setup_logging(fmt=log_format, level=config.log.level, redactor=redactor)
    return serve(config, parts=run_parts(config), duration=args.duration, log_format=log_format, redactor=redactor)


def cmd_listen(args: argparse.Namespace) -> int:
    """The seed's listener worker: only the listener (and the alerts its reorg guard raises)."""
    config = _serving_config(args, with_checks=False)
    log_format = args.log_format or config.log.format
    setup_logging(fmt=log_format, level=config.log.level, secrets=config.secrets())
    if not config.listener.rpc_endpoints:
        raise ExitError(f"{config.source}: listener.rpc_url: required by listen (POLYGON_RPC_URL)", EXIT_USAGE)
    return serve(
        config,
        parts=frozenset({"listener", "alerts"}),
        duration=args.duration,
        title="BLOCKTRUST BLOCKCHAIN EVENT LISTENER",
        log_format=log_format,
    )


# ------------------------------------------------------------------------------ other subcommands
def cmd_check_config(args: argparse.Namespace) -> int:
    config = with_listen(load(args), None, args.web_config_file)
    web_security(config)  # a bad web configuration file fails here as it would at start
    sys.stdout.write(effective_config_yaml(config))
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace) -> int:
    config = load(args, with_checks=False, with_contracts=False)  # the schema needs no ABI
    setup_logging(fmt=config.log.format, level=config.log.level, secrets=config.secrets())
    store = make_store(config)
    try:
        version = store.migrate()
    except StoreError as exc:
        raise ExitError(Redactor(config.secrets())(f"migrate: {exc}"), EXIT_FAILURE) from None
    finally:
        store.close()
    print(f"schema version {version} ({store.kind})")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    config = load(args, with_checks=False, with_contracts=False)
    setup_logging(fmt=config.log.format, level="warning", secrets=config.secrets())
    store = make_store(config, read_only=True)  # reading creates nothing: no SQLite file, no schema
    try:
        return report_command(store, config.slo, SystemClock(), args, sys.stdout)
    except StoreError as exc:
        raise ExitError(Redactor(config.secrets())(f"report: {exc}"), EXIT_FAILURE) from None
    finally:
        store.close()


def cmd_checkpoint_show(args: argparse.Namespace) -> int:
    config = load(args, with_checks=False, with_contracts=False)
    store = make_store(config, read_only=True)
    try:
        view = checkpoints.show(store)
    except StoreError as exc:
        raise ExitError(Redactor(config.secrets())(f"checkpoint show: {exc}"), EXIT_FAILURE) from None
    finally:
        store.close()
    sys.stdout.write(json.dumps(view.as_json(), indent=2) + "\n" if args.json else view.as_text())
    return EXIT_OK


def cmd_checkpoint_rewind(args: argparse.Namespace) -> int:
    config = load(args, with_checks=False, with_contracts=False)
    # Opened without creating anything: a mistyped sqlite_path is "no checkpoint", not a new empty database.
    store = make_store(config, create=False)
    try:
        before, after, deleted = checkpoints.rewind(store, args.to)
    except checkpoints.RewindRefusedError as exc:
        raise ExitError(f"checkpoint rewind: {exc}", EXIT_USAGE if exc.bad_input else EXIT_FAILURE) from None
    except SchemaMissingError as exc:
        message = f"checkpoint rewind: no listener checkpoint to rewind ({exc})"
        raise ExitError(Redactor(config.secrets())(message), EXIT_USAGE) from None
    except StoreError as exc:
        raise ExitError(Redactor(config.secrets())(f"checkpoint rewind: {exc}"), EXIT_FAILURE) from None
    finally:
        store.close()
    print(
        f"checkpoint rewound from block {before.block_number} to {after.block_number}: {deleted} events deleted; "
        "the next poll ingests from the block after it"
    )
    return EXIT_OK


def _block_number_arg(text: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a block number, got {text!r}") from None


def cmd_rules(args: argparse.Namespace) -> int:
    config = load(args, with_contracts=False)
    sys.stdout.write(render_explanation(config) if args.explain else render_rules(config))
    return EXIT_OK


# metadata.name of a PrometheusRule: an RFC 1123 DNS subdomain, as the API server requires.
_K8S_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def cmd_prometheus_rule(args: argparse.Namespace) -> int:
    """``prometheus-rule FILE...``: the rule files as one PrometheusRule (deploy/kubernetes)."""
    if not _K8S_NAME.fullmatch(args.name) or len(args.name) > 253:
        raise ExitError(
            f"prometheus-rule: --name {args.name!r}: not a Kubernetes object name (lowercase letters, digits, "
            "'-' and '.', starting and ending with a letter or digit, at most 253 characters)",
            EXIT_USAGE,
        )
    files: list[tuple[str, str]] = []
    for path in args.files:
        try:
            with open(path, "rb") as handle:
                files.append((path, decode_text(handle.read(), path)))
        except OSError as exc:
            raise ExitError(f"{path}: {exc.strerror}", EXIT_USAGE) from None
        except ConfigError as exc:
            raise ExitError(str(exc), EXIT_USAGE) from None
    try:
        sys.stdout.write(prometheus_rule(files, name=args.name))
    except RuleFileError as exc:
        raise ExitError(str(exc), EXIT_USAGE) from None
    return EXIT_OK


SIMULATE_HELP = "run the Blocktrust API simulator alone"


def cmd_simulate(argv: Sequence[str]) -> int:
    """``simulate``: its arguments belong to the simulator, which only this command imports."""
    from exporter.demo.simulator import cli as simulator_cli

    parser = _Parser(prog="blocktrust-exporter simulate", description=SIMULATE_HELP)
    simulator_cli.add_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging()
    return simulator_cli.run(args)


def cmd_demo(args: argparse.Namespace) -> int:
    # The demo kit, which the other commands never import.
    from exporter.demo.runner import demo_environment
    from exporter.demo.runner import run as run_demo

    # The demo brings its own API, chain and store: a shell set up for a real deployment
    # (POLYGON_RPC_URL, DATABASE_URL...) must neither break it nor point it elsewhere.
    env, ignored = demo_environment(os.environ)
    config = with_listen(load(args, with_contracts=False, env=env), None, args.web_config_file)
    return run_demo(args, config, ignored_env=ignored)


def cmd_notify_test(args: argparse.Namespace) -> int:
    """``notify-test``: a firing then a resolved test notice to each channel; exit 0 when all took them."""
    config = load(args, with_checks=False, with_contracts=False)
    setup_logging(fmt=config.log.format, level="warning", secrets=config.secrets())
    redact = Redactor(config.secrets())
    channels = channels_from_settings(config.alerting)
    if args.channel is not None:
        names = [channel.name for channel in channels]
        channels = [channel for channel in channels if channel.name == args.channel]
        if not channels:
            configured = ", ".join(names) or "none"
            raise ExitError(
                f"notify-test: no channel {args.channel!r} is configured (configured: {configured})", EXIT_USAGE
            )
    if not channels:
        raise ExitError(
            "notify-test: no alert channel is configured (alerting.slack, telegram, webhook, console)", EXIT_FAILURE
        )
    clock = SystemClock()
    metrics = Metrics(CollectorRegistry(), slo_latency_seconds=config.slo.latency_ms / 1000, version="notify-test")
    policy = dataclasses.replace(retry_policy(config.alerting), max_tries=1)  # the first answer is the answer
    with requests.Session() as session:
        sender = HttpSender(session, clock, metrics, policy, redact=redact)
        answers = send_trial(channels, sender, clock.now(), redact)
    for answer in answers:
        print(answer.line())
    return EXIT_OK if all(answer.ok for answer in answers) else EXIT_FAILURE


def cmd_check(args: argparse.Namespace) -> int:
    """``check NAME``: run one check once, print its result; exit 0 passed, 1 failed, 2 no such check."""
    config = load(args, with_contracts=False)
    # The result is printed: the round's own "check failed" warning would only repeat it.
    setup_logging(fmt=config.log.format, level="error", secrets=config.secrets())
    redactor = Redactor(config.secrets())
    store = make_store(config, read_only=True) if args.name in LISTENER_CHECKS else None
    clock = SystemClock()
    session = requests.Session()
    try:
        spec = [spec for spec in resolve_checks(config) if spec.name == args.name]
        metrics = Metrics(CollectorRegistry(), slo_latency_seconds=config.slo.latency_ms / 1000, version="check")
        chain = chain_checks_reader(config, spec, metrics, clock, session)
        result = run_one(config, args.name, clock=clock, store=store, redactor=redactor, chain=chain)
    except ConfigError as exc:  # an eth_call check that does not fit the contracts' ABIs
        raise ExitError(str(exc), EXIT_USAGE) from None
    except KeyError:
        names = ", ".join(spec.name for spec in resolve_checks(config)) or "none"
        raise ExitError(f"check: no enabled check named {args.name!r} (enabled: {names})", EXIT_USAGE) from None
    finally:
        session.close()
        if store is not None:
            store.close()
    verdict = "passed" if result.ok else "FAILED"
    print(f"{result.check_name}: {verdict} in {result.latency_ms} ms: {result.details.get('reason')}")
    print(redactor(json.dumps(result.details, sort_keys=True, default=str)))
    return EXIT_OK if result.ok else EXIT_FAILURE


def cmd_version(_args: argparse.Namespace) -> int:
    print(f"blocktrust-exporter {exporter_version()}")
    return EXIT_OK


def _duration_arg(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _Parser(argparse.ArgumentParser):
    """Bad arguments are bad input like any other: one line naming the culprit, exit 2 (argparse
    would print its usage block first). Subcommands inherit the class."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="blocktrust-exporter",
        description="Monitors the Blocktrust API and follows its contracts on chain; serves Prometheus metrics.",
    )
    common = _Parser(add_help=False)
    common.add_argument(
        "--config", default=DEFAULT_CONFIG_PATH, help=f"configuration file (default: {DEFAULT_CONFIG_PATH})"
    )
    web = _Parser(add_help=False)
    web.add_argument(
        "--web.config.file",
        dest="web_config_file",
        metavar="FILE",
        help="TLS and basic auth for the HTTP server (exporter-toolkit format; env WEB_CONFIG_FILE, "
        "overriding server.web_config_file)",
    )
    serving = _Parser(add_help=False, parents=[web])
    serving.add_argument(
        "--listen", help="HOST:PORT to serve on, e.g. 0.0.0.0:9108 or [::]:9108; overrides server.listen"
    )
    serving.add_argument("--log-format", choices=["logfmt", "json"], help="override log.format")
    serving.add_argument("--duration", type=_duration_arg, help="stop by itself after this long (e.g. 60s)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(
        name: str, func: Callable[[argparse.Namespace], int], help_text: str, *parents: _Parser
    ) -> argparse.ArgumentParser:
        command = sub.add_parser(name, parents=[common, *parents], help=help_text, description=help_text)
        command.set_defaults(func=func)
        return command

    add("run", cmd_run, "run the exporter: checks, listener, alerts, SLO report (default)", serving)
    add("listen", cmd_listen, "run only the chain listener (the seed's listener worker)", serving)
    add("check-config", cmd_check_config, "validate and print the effective configuration, secrets masked", web)
    add("migrate", cmd_migrate, "create or upgrade the database schema")
    add_report_arguments(add("report", cmd_report, "print the SLO report from the store"))
    checkpoint = sub.add_parser(
        "checkpoint",
        help="show or rewind the listener checkpoint",
        description="show or rewind the listener checkpoint",
    )
    checkpoint_sub = checkpoint.add_subparsers(dest="checkpoint_command", metavar="ACTION", required=True)
    show = checkpoint_sub.add_parser(
        "show", parents=[common], help="print the checkpoint block, its hash and the recent hashes"
    )
    show.add_argument("--json", action="store_true", help="print JSON instead of text")
    show.set_defaults(func=cmd_checkpoint_show)
    rewind = checkpoint_sub.add_parser(
        "rewind",
        parents=[common],
        help="delete the events above block N and set the checkpoint to N, in one transaction "
        "(refused while a listener runs)",
    )
    rewind.add_argument("--to", type=_block_number_arg, required=True, metavar="N", help="the block to rewind to")
    rewind.set_defaults(func=cmd_checkpoint_rewind)
    rules_parser = add("rules", cmd_rules, "print the Prometheus SLO rules generated from the configuration")
    rules_parser.add_argument(
        "--explain",
        action="store_true",
        help="print instead when each generated alert fires and how soon it ends after recovery",
    )
    promrule = sub.add_parser(
        "prometheus-rule",
        help="print Prometheus rule files as one prometheus-operator PrometheusRule",
        description="print Prometheus rule files as one prometheus-operator PrometheusRule",
    )
    promrule.set_defaults(func=cmd_prometheus_rule)
    promrule.add_argument("files", nargs="+", metavar="FILE", help="Prometheus rule files, e.g. prometheus/rules/*.yml")
    promrule.add_argument("--name", default="blocktrust-exporter", help="metadata.name (default: blocktrust-exporter)")
    # Listed here for --help; main() hands its arguments to the simulator's own parser.
    sub.add_parser("simulate", help=SIMULATE_HELP, add_help=False)
    demo_parser = add("demo", cmd_demo, "run everything locally: simulator, anvil chain, exporter", serving)
    demo_parser.add_argument(
        "--fail",
        action="append",
        default=[],
        metavar="PATH=FAULT",
        help="make the simulator fail an endpoint, e.g. /api/explorer/stats=500",
    )
    demo_parser.add_argument("--workdir", default="var/demo", help="where the demo keeps its files")
    notify = add("notify-test", cmd_notify_test, "send a firing then a resolved test notice to each alert channel")
    notify.add_argument("--channel", metavar="NAME", help="only this channel (slack, telegram, webhook, console)")
    check = add("check", cmd_check, "run one check once and print its result (exit 0 passed, 1 failed)")
    check.add_argument("name", metavar="NAME", help="the check's name, e.g. api.health")
    add("version", cmd_version, "print the version")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["simulate"]:
        return cmd_simulate(argv[1:])
    parser = build_parser()
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["run", *argv]
    args = parser.parse_args(argv)
    args.config_given = any(a == "--config" or a.startswith("--config=") for a in argv)
    try:
        return int(args.func(args))
    except ExitError as exc:
        print(f"blocktrust-exporter: {exc}", file=sys.stderr)
        return exc.code
