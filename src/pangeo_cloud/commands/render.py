"""`pangeo-cloud render DEPLOYMENT STAGE`: what Helm would apply, deterministically."""

from __future__ import annotations

import argparse
import sys

import yaml

from pangeo_cloud.config import Deployment, Paths, load_deployment, resolve_target
from pangeo_cloud.config.layering import Layer, merge_all, values_layers
from pangeo_cloud.config.secrets import mask_secrets
from pangeo_cloud.config.support import SUPPORT_TARGET
from pangeo_cloud.deploy import helm
from pangeo_cloud.deploy.support import render_support, support_values


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "render",
        help="print the rendered manifests (or merged values)",
        description=__doc__ + " Generated secrets are pinned; secret values "
        "stay masked unless decrypted.",
    )
    p.add_argument("deployment")
    p.add_argument("stage", help=f"a stage, or `{SUPPORT_TARGET}` for the monitoring release")
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
    paths = Paths.discover(args.root)
    deployment = load_deployment(args.deployment, paths)
    if args.stage == SUPPORT_TARGET and SUPPORT_TARGET not in deployment.stages:
        return _run_support(args, deployment, paths)
    target = resolve_target(deployment, args.stage, paths)
    layers = values_layers(deployment, target.stage, paths=paths)
    if args.layers or args.values:
        return _print_values(args, layers, paths)
    values = merge_all(layers)
    _write(*helm.render(paths.chart, target.stage, deployment.kubernetes_version, values))
    return 0


def _print_values(args: argparse.Namespace, layers: list[Layer], paths: Paths) -> int:
    """--layers (the ordered list) or --values (merged, secrets masked)."""
    if args.layers:
        for index, layer in enumerate(layers, 1):
            where = layer.path.relative_to(paths.root) if layer.path else "(generated)"
            print(f"{index}. {layer.name}: {where}")
        return 0
    # Never print a secret: ciphertext paths of the sops layers and any value under
    # a secret-looking key are masked, whatever the layers hold.
    secret_paths = [p for layer in layers for p in layer.secret_paths]
    values = merge_all(layers)
    yaml.safe_dump(mask_secrets(values, secret_paths), sys.stdout, sort_keys=True, width=100)
    return 0


def _run_support(args: argparse.Namespace, deployment: Deployment, paths: Paths) -> int:
    """`render DEPLOYMENT support`: the cluster's monitoring release (helm-chart/support)."""
    layers, values = support_values(deployment, paths)
    if args.layers or args.values:
        return _print_values(args, layers, paths)
    _write(*render_support(deployment, values, paths))
    return 0


def _write(stream: str, view: helm.ChartView) -> None:
    if not view.full:
        print(
            f"# note: subcharts {', '.join(view.missing)} are not downloaded; only the "
            "chart's own templates are rendered (run `helm dependency build`).",
            file=sys.stderr,
        )
    sys.stdout.write(stream)
