"""Command line: ``python -m awp_lib {data,bench,...} --help``."""
from __future__ import annotations

import argparse
import json
import sys


def cmd_data(args):
    from . import data
    raw = data.prepare_fashion_mnist(args.root) if data.DEBIAN_FASHION_MNIST.exists() or not args.download else None
    if raw:
        print(f"fashion-mnist ready in {raw}")
    for name in args.download or []:
        for train in (True, False):
            x, _ = data.load_dataset(name, train, args.root, download=True)
        print(f"{name} ready in {data.data_root(args.root)}")


def cmd_bench(args):
    from . import bench
    print(json.dumps(bench.run(args.only, args.device, args.quick), indent=2))


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m awp_lib", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("data", help="prepare Fashion-MNIST offline (Debian package) and optionally download others")
    d.add_argument("--root", default=None, help="data folder (default: $AWP_DATA, else data/ of the repository)")
    d.add_argument("--download", nargs="*", choices=["fashion-mnist", "cifar10", "cifar100", "svhn"],
                   help="download these datasets with torchvision (needs internet)")
    d.set_defaults(fn=cmd_data)
    b = sub.add_parser("bench", help="speed benchmarks as side-by-side ratios; prints one JSON object")
    b.add_argument("--only", nargs="*", help="run only these benchmarks")
    b.add_argument("--device", default="cpu")
    b.add_argument("--quick", action="store_true", help="fewer repeats")
    b.set_defaults(fn=cmd_bench)
    for register in _extra_commands():
        register(sub)
    args = p.parse_args(argv)
    try:
        args.fn(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except RuntimeError as e:
        # the book's runs failed, or a run diverged or stuck at chance: the message says it all
        if type(e).__name__ not in ("RunsFailed", "TrainingDiverged", "TrainingStuck"):
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


def _extra_commands():
    """Sub-commands of other modules (train, landscape, evaluate, reproduce), registered when present."""
    import importlib
    out = []
    for mod in ("train", "landscape", "evaluate_cli", "reproduce", "bookruns", "levers"):
        try:
            m = importlib.import_module(f"awp_lib.{mod}")
        except ModuleNotFoundError as e:
            if e.name != f"awp_lib.{mod}":
                raise
            continue
        out.append(m.register_cli)
    return out


if __name__ == "__main__":
    main()
