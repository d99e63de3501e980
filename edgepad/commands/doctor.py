"""`edgepad doctor`: versions, devices, and which subcommands are usable on this machine."""
from __future__ import annotations

import argparse
import json

from edgepad.commands.common import verdict


def add_doctor_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--probe-gpu", action="store_true",
                        help="also create a TensorRT builder in a subprocess (slow; can crash without a GPU)")


def doctor_main(args: argparse.Namespace) -> int:
    from edgepad.doctor import collect
    report = collect(probe_gpu=args.probe_gpu)
    if args.json:
        print(json.dumps(report, indent=2))
        return _verdict(args, report)
    print(f"edgepad {report['edgepad']}  Python {report['python']}  {report['platform']}")
    print("\npackages:")
    for name, info in report["packages"].items():
        print(f"  {name:<14} {info}")
    print("\ndevices:")
    for name, info in report["devices"].items():
        print(f"  {name:<14} {info}")
    print("\nsubcommands:")
    for name, (ok, why) in report["commands"].items():
        print(f"  {name:<10} {'usable' if ok else 'unavailable'}{'' if ok else ' — ' + why}")
    return _verdict(args, report)


def _verdict(args: argparse.Namespace, report: dict) -> int:
    usable = sum(ok for ok, _ in report["commands"].values())
    return verdict(args, True, f"{usable} of {len(report['commands'])} subcommands usable here")
