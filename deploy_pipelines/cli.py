"""`deploy-pipelines`: the local stack, catalog checks and the demo."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deploy-pipelines")
    sub = parser.add_subparsers(dest="command", required=True)
    stack = sub.add_parser("stack", help="the local stack of real servers on 127.0.0.1")
    stack.add_argument("action", choices=["up", "down", "status", "env"])
    stack.add_argument("--root", default=".stack", help="state folder (default .stack)")
    stack.add_argument("--no-base-image", action="store_true", help="skip building the Python base image")
    check = sub.add_parser("check", help="validate a catalog (deploy.yaml)")
    check.add_argument("catalog", nargs="?", default=None)
    demo = sub.add_parser("demo", help="release the sample service end to end on the local stack")
    demo.add_argument("--root", default=".stack")
    args = parser.parse_args(argv)

    if args.command == "stack":
        from deploy_pipelines.stack.local import LocalStack

        s = LocalStack(Path(args.root))
        if args.action == "up":
            print(f"stack up under {s.root}")
            s.up(base_image=not args.no_base_image)
            print(f"settings written to {s.root / 'env'} (source it in a shell)")
        elif args.action == "down":
            s.down()
        elif args.action == "status":
            for name, up in s.status().items():
                print(f"  {name:<11} {'running' if up else 'stopped'}")
        else:
            print(json.dumps({k: v for k, v in s.env().items() if "URL" not in k}, indent=2))
        return 0
    if args.command == "check":
        from deploy_pipelines.catalog import CatalogError, load_catalog

        try:
            catalog = load_catalog(args.catalog)
        except CatalogError as exc:
            print(exc, file=sys.stderr)
            return 1
        import os

        from deploy_pipelines.catalog.models import env_names

        targets = sum(len(s.targets) for s in catalog.services.values())
        print(f"{catalog.project}: {len(catalog.services)} service(s), {targets} target(s): ok")
        missing = sorted(n for n in env_names(catalog) if n not in os.environ)
        if missing:
            print(f"environment variables this machine must set before releasing: {', '.join(missing)}")
        return 0
    if args.command == "demo":
        from deploy_pipelines.demo import run_demo

        return run_demo(Path(args.root))
    return 2


if __name__ == "__main__":
    sys.exit(main())
