"""`fusion-bench list`: the registered methods, datasets and evaluators, and installed plug-ins."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("list", help="list registered methods, datasets and evaluators")


def run(args: argparse.Namespace) -> int:
    from fusion_bench.registry import names, plugins

    for kind in ("method", "dataset", "evaluator"):
        print(f"{kind}s: {', '.join(names(kind)) or '-'}")
    for kind in ("method", "dataset"):
        for name, (target, dist) in plugins(kind).items():
            print(f"  plug-in {kind} {name}: {target} (package {dist})")
    return 0
