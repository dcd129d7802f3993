"""Command line: ``python -m awp_lib {data,bench,...} --help``."""
from __future__ import annotations

import argparse
import json
import sys

from . import data, evaluate_cli, landscape, train
from .book import bench, build, levers, pages, reproduce


def cmd_data(args):
    raw = data.prepare_fashion_mnist(args.root) if data.DEBIAN_FASHION_MNIST.exists() or not args.download else None
    if raw:
        print(f"fashion-mnist ready in {raw}")
    for name in args.download or []:
        for split in (True, False):  # the training and the test split
            x, _ = data.load_dataset(name, split, args.root, download=True)
        print(f"{name} ready in {data.data_root(args.root)}")


def cmd_bench(args):
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
    for module in (train, landscape, evaluate_cli, reproduce, build, pages, levers):
        module.register_cli(sub)
    args = p.parse_args(argv)
    try:
        args.fn(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except RuntimeError as e:  # runs or pages failed, training diverged or stuck, a folder busy: the message says it
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
