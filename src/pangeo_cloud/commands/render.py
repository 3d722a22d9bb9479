"""`pangeo-cloud render DEPLOYMENT STAGE`: what Helm would apply, deterministically."""

from __future__ import annotations

import argparse
import sys

import yaml

from pangeo_cloud.config import Paths, resolve_target
from pangeo_cloud.config.layering import merge_all, values_layers
from pangeo_cloud.config.secrets import mask_secrets
from pangeo_cloud.deploy import helm


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "render",
        help="print the rendered manifests (or merged values)",
        description=__doc__ + " Generated secrets are pinned; secret values "
        "stay masked unless decrypted.",
    )
    p.add_argument("deployment")
    p.add_argument("stage")
    what = p.add_mutually_exclusive_group()
    what.add_argument(
        "--values",
        action="store_true",
        help="print the merged values passed to Helm instead of manifests",
    )
    what.add_argument(
        "--layers", action="store_true", help="print the ordered list of values layers"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    target = resolve_target(args.deployment, args.stage, Paths.discover(args.root))
    paths, stage = target.paths, target.stage
    layers = values_layers(target.deployment, stage, paths=paths)
    if args.layers:
        for index, layer in enumerate(layers, 1):
            where = layer.path.relative_to(paths.root) if layer.path else "(generated)"
            print(f"{index}. {layer.name}: {where}")
        return 0
    values = merge_all(layers)
    if args.values:
        # Never print a secret: ciphertext paths of the sops layers and any value under
        # a secret-looking key are masked, whatever the layers hold.
        secret_paths = [p for layer in layers for p in layer.secret_paths]
        yaml.safe_dump(mask_secrets(values, secret_paths), sys.stdout, sort_keys=True, width=100)
        return 0
    stream, view = helm.render(paths.chart, stage, target.deployment.kubernetes_version, values)
    if not view.full:
        print(
            f"# note: subcharts {', '.join(view.missing)} are not downloaded; only the "
            "umbrella's own templates are rendered (run `helm dependency build`).",
            file=sys.stderr,
        )
    sys.stdout.write(stream)
    return 0
