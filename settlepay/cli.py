"""The `settlepay` console script.

    settlepay dev                       the whole local stack in one terminal
    settlepay migrate                   apply database migrations
    settlepay api | worker              run one process of the stack
    settlepay ledger check              verify the ledger's invariants (exit 1 on a violation)
    settlepay audit verify [--anchors F] verify the audit hash chain (exit 1 on tampering),
                                        against the anchors of F too
    settlepay audit anchor [--anchors F] append the chain head to the anchor log (hourly)
    settlepay audit export --since T    audit records as JSON lines
    settlepay settlement verify MARKET  recompute a market's payouts against the ledger
    settlepay api-keys create NAME      make an API key (the first operator key of production),
                                        pinned to --api-version (default: the current one)
    settlepay webhooks dispatch|endpoints|attempts|resend|recover   partner webhooks
    settlepay codec-server              Temporal UI's codec: decrypted payloads
    settlepay reconcile [--since T]     reconcile the gateway, our records and the ledger
    settlepay partitions ensure|archive partitions of the append-only tables: ahead, archived

Each command lives in its own module and is imported only when it runs: the CLI's commands are
settlepay/cli_commands.py and settlepay/cli_settlement.py (doors into the packages); business
commands (state changes with their audit and outbox records) are the top-level `commands/`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from settlepay import task_queues

# command path -> (module, function, help). Functions take the parsed args and return an exit code.
COMMANDS: dict[tuple[str, ...], tuple[str, str, str]] = {
    ("dev",): ("settlepay.devstack", "main", "run the whole local stack"),
    ("migrate",): ("settlepay.cli_commands", "migrate", "apply database migrations"),
    ("api",): ("settlepay.cli_commands", "api", "run the HTTP API"),
    ("worker",): ("settlepay.cli_commands", "worker", "run the Temporal worker"),
    ("ledger", "check"): ("settlepay.cli_commands", "ledger_check", "verify ledger invariants"),
    ("audit", "verify"): ("settlepay.cli_commands", "audit_verify", "verify the audit hash chain"),
    ("audit", "anchor"): ("settlepay.cli_commands", "audit_anchor",
                          "append the audit chain head to the anchor log outside the database"),
    ("audit", "export"): ("settlepay.cli_commands", "audit_export",
                          "export audit records as JSON lines"),
    ("settlement", "verify"): ("settlepay.cli_settlement", "settlement_verify",
                               "recompute a market's payouts and compare with the ledger"),
    ("webhooks", "dispatch"): ("settlepay.cli_webhooks", "dispatch",
                               "run the partner webhook dispatcher"),
    ("webhooks", "endpoints"): ("settlepay.cli_webhooks", "endpoints", "list webhook endpoints"),
    ("webhooks", "attempts"): ("settlepay.cli_webhooks", "attempts",
                               "show delivery attempts of an endpoint or an event"),
    ("webhooks", "resend"): ("settlepay.cli_webhooks", "resend",
                             "send an event once more to an endpoint"),
    ("webhooks", "recover"): ("settlepay.cli_webhooks", "recover",
                              "resend what failed to an endpoint since a time"),
    ("api-keys", "create"): ("settlepay.cli_commands", "api_keys_create",
                             "make an API key and print its secret once"),
    ("codec-server",): ("settlepay.codec_server", "main",
                        "serve Temporal's remote codec: the UI shows decrypted payloads"),
    ("reconcile",): ("settlepay.cli_reconciliation", "reconcile",
                     "reconcile the gateway, our records and the ledger over a window"),
    ("partitions", "ensure"): ("settlepay.cli_partitions", "ensure",
                               "create the partitions of the append-only tables ahead of time"),
    ("partitions", "archive"): ("settlepay.cli_partitions", "archive",
                                "detach partitions past their retention, for archive"),
}

# Extra arguments per command.
ARGUMENTS: dict[tuple[str, ...], list[tuple[tuple[str, ...], dict]]] = {
    ("audit", "verify"): [(("--anchors",), {"default": None, "help": "anchor log to check the "
                                            "chain against (default: the setting)"})],
    ("audit", "anchor"): [(("--anchors",), {"default": None, "help": "anchor log to append to "
                                            "(default: SETTLEPAY_AUDIT_ANCHOR_PATH)"}),
                          (("--every",), {"type": float, "default": None,
                                          "help": "anchor again every SECONDS until SIGTERM"})],
    ("audit", "export"): [(("--since",), {"help": "ISO 8601 timestamp", "default": None}),
                          (("--output", "-o"), {"help": "file (default: stdout)", "default": "-"})],
    ("settlement", "verify"): [(("market_id",), {})],
    ("webhooks", "endpoints"): [(("--partner",), {"default": None})],
    ("webhooks", "attempts"): [(("--endpoint",), {"default": None}),
                               (("--event",), {"default": None}),
                               (("--limit",), {"type": int, "default": 50})],
    ("webhooks", "resend"): [(("event_id",), {}), (("endpoint_id",), {})],
    ("webhooks", "recover"): [(("endpoint_id",), {}), (("since",), {"help": "ISO 8601"})],
    ("api",): [(("--host",), {"default": None}), (("--port",), {"type": int, "default": None})],
    ("worker",): [(("--task-queue",), {"action": "append", "choices": task_queues.ALL,
                                       "help": "poll only this queue (repeatable; default: all)"})],
    ("codec-server",): [(("--host",), {"default": None}),
                        (("--port",), {"type": int, "default": None})],
    ("reconcile",): [
        (("--since",), {"help": "window start, ISO 8601 (default: the last run's end)",
                        "default": None}),
        (("--until",), {"help": "window end, ISO 8601 (default: now)", "default": None}),
        (("--no-repair",), {"action": "store_true", "help": "find breaks, repair nothing"}),
        (("--grace",), {"type": int, "default": None,
                        "help": "seconds an item stays pending (default: the setting)"}),
        (("--json",), {"default": None, "help": "the run as JSON (default: "
                                                "reconciliation-<run id>.json)"}),
        (("--html",), {"default": None, "help": "also an HTML report with charts"}),
        (("--png",), {"action": "store_true",
                      "help": "the report's charts as PNG files beside the HTML (or the JSON)"}),
    ],
    ("partitions", "ensure"): [
        (("--months-ahead",), {"type": int, "default": 3,
                               "help": "monthly partitions after this month (outbox, attempts)"}),
        (("--audit-records-per-partition",), {"type": int, "default": 10_000_000}),
    ],
    ("partitions", "archive"): [
        (("--audit-keep-days",), {"type": int, "default": 400,
                                  "help": "audit records kept in the live table"}),
        (("--outbox-keep-days",), {"type": int, "default": 35}),
        (("--attempts-keep-days",), {"type": int, "default": 95}),
    ],
    ("api-keys", "create"): [
        (("name",), {"help": "what the key is for, e.g. 'ops bootstrap'"}),
        (("--role",), {"choices": ["operator", "partner"], "default": "operator"}),
        (("--partner",), {"help": "the partner of a partner key", "default": None}),
        (("--scopes",), {"help": "comma-separated scopes (default: the role's)", "default": None}),
        (("--api-version",), {"help": "the API version the key is pinned to (default: the "
                                      "current one)", "default": None}),
    ],
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="settlepay", description=__doc__.split("\n\n")[0])
    groups: dict[tuple[str, ...], argparse._SubParsersAction] = {
        (): parser.add_subparsers(dest="command", required=True)}
    for path, (module, function, help_text) in COMMANDS.items():
        for depth in range(1, len(path)):
            prefix = path[:depth]
            if prefix not in groups:
                sub = groups[prefix[:-1]].add_parser(prefix[-1], help=f"{prefix[-1]} commands")
                groups[prefix] = sub.add_subparsers(dest="_".join(prefix), required=True)
        cmd = groups[path[:-1]].add_parser(path[-1], help=help_text)
        for flags, options in ARGUMENTS.get(path, []):
            cmd.add_argument(*flags, **options)
        cmd.set_defaults(_target=(module, function), _path=path)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module, function = args._target
    from settlepay.observability import cli_command

    with cli_command(args._path):   # JSON logs and a span per one-shot command
        return int(getattr(importlib.import_module(module), function)(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
