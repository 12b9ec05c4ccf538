# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""``ood_seg <command>``: thin argument parsing; each command lives in ``ood_seg_node.commands``."""

from __future__ import annotations

import argparse
import importlib
import sys

from ood_seg_node.commands import COMMANDS


def _module(command: str):
    return importlib.import_module(f"ood_seg_node.commands.{command.replace('-', '_')}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ood_seg", description="ood_seg_node tools: demo, bags, evaluation, training, benchmarks "
                                    "('ood_seg <command> --help' documents each)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<command>")
    for name, summary in COMMANDS.items():
        command_parser = sub.add_parser(name, help=summary, description=summary)
        _module(name).add_arguments(command_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(_module(args.command).run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (ValueError, RuntimeError, OSError) as error:  # one clear line, not a traceback
        print(f"ood_seg {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
