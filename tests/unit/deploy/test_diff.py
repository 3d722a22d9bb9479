"""`pangeo-cloud diff`: masking, object-wise unified diff, and no-cluster failures."""

from __future__ import annotations

import base64
import os
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from pangeo_cloud.config import Paths, load_deployment, resolve_target
from pangeo_cloud.deploy.diff import (
    MASK,
    MASK_CHANGED,
    SOPS_VALUE_MASK,
    diff_stage,
    objects,
    unified_diff,
)
from pangeo_cloud.deploy.tools import ToolError

DEP = "gcp-us-central1-b"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _secret(value: str, extra: dict | None = None) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "hub", "namespace": "staging"},
        "data": {"values.yaml": b64(value), **(extra or {})},
    }


def test_secret_data_is_masked_and_changes_still_show() -> None:
    rendered = {("Secret", "staging", "hub"): _secret("client_secret: new-secret-value")}
    live = {("Secret", "staging", "hub"): _secret("client_secret: old-secret-value")}
    text, changed = unified_diff(rendered, live, set())
    assert changed == ["Secret/staging/hub"]
    assert "secret-value" not in text and b64("client_secret: new-secret-value") not in text
    assert f"-  values.yaml: {MASK}" in text and f"+  values.yaml: {MASK_CHANGED}" in text
    same, changed = unified_diff(rendered, dict(rendered), set())
    assert same == "" and changed == []


def test_sops_values_are_masked_everywhere() -> None:
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "staging"},
        "data": {"a": "token=sekrit-token-123", "b": "plain"},
    }
    text, _ = unified_diff({("ConfigMap", "staging", "c"): config}, {}, {"sekrit-token-123"})
    assert "sekrit" not in text and f"token={SOPS_VALUE_MASK}" in text
    assert "live: (absent)" in text


def test_diff_is_per_object_and_ignores_order() -> None:
    stream_a = "---\nkind: A\nmetadata: {name: a}\n---\nkind: B\nmetadata: {name: b}\n"
    stream_b = "---\nkind: B\nmetadata: {name: b}\n---\nkind: A\nmetadata: {name: a}\n"
    text, changed = unified_diff(objects(stream_a, "ns"), objects(stream_b, "ns"), set())
    assert text == "" and changed == []


def test_no_cluster_is_one_clear_line(
    repo_paths: Paths, tmp_path: Path, monkeypatch, helm_bin, capsys
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        textwrap.dedent("""\
        apiVersion: v1
        kind: Config
        clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
        users: [{name: u, user: {token: x}}]
        contexts: [{name: c, context: {cluster: c, user: u}}]
        current-context: c
    """)
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    with pytest.raises(ToolError) as info:
        diff_stage(resolve_target(DEP, "staging", repo_paths))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("cannot reach the Kubernetes cluster")
    assert f"KUBECONFIG={kubeconfig}" in message and "127.0.0.1:1" in message

    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    import pangeo_cloud.cli as cli

    assert cli.main(["--root", str(repo_paths.root), "diff", DEP, "staging"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "(file missing)" in err


HELM_STUB = """\
#!{python}
import os, sys
args = sys.argv[1:]
if args[0] == "list":
    sys.exit(0)
if args[:2] == ["get", "manifest"]:
    sys.stdout.write(open(os.environ["STUB_LIVE"]).read())
    sys.exit(0)
if args[0] == "template":  # no cluster here: render client-side
    args = [a for a in args if a not in ("--dry-run=server", "--is-upgrade")]
os.execv({real!r}, [{real!r}, *args])
"""


def test_diff_against_a_live_manifest_with_real_helm_template(
    repo_copy: Paths, encrypt, sops_env, helm_bin: str, tmp_path: Path, monkeypatch
) -> None:
    secrets = repo_copy.deployments / DEP / "secrets" / "staging.enc.yaml"
    encrypt(
        "jupyterhub:\n  hub:\n    config:\n      GitHubOAuthenticator:\n"
        "        client_secret: very-secret-oauth-value\n",
        secrets,
    )
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "helm").write_text(HELM_STUB.format(python=sys.executable, real=helm_bin))
    (bindir / "helm").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    deployment = load_deployment(DEP, repo_copy)
    # "Live": what the chart renders now, with one change, a leaked value in a
    # ConfigMap and a Secret.
    from pangeo_cloud.config.layering import merge_all, values_layers
    from pangeo_cloud.deploy.diff import render_stage
    from pangeo_cloud.deploy.sops import SopsDecryptor

    layers = values_layers(deployment, "staging", paths=repo_copy, decrypt=SopsDecryptor())
    stream, _ = render_stage(
        resolve_target(deployment, "staging", repo_copy), layers, server=False, is_upgrade=False
    )
    docs = [d for d in yaml.safe_load_all(stream) if d]
    assert docs and merge_all(layers)  # the umbrella renders something
    docs[0].setdefault("metadata", {}).setdefault("labels", {})["old"] = "label"
    docs.append(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "leak", "namespace": "staging"},
            "data": {"x": "very-secret-oauth-value"},
        }
    )
    docs.append(_secret("very-secret-oauth-value"))
    live = tmp_path / "live.yaml"
    live.write_text(yaml.safe_dump_all(docs))
    monkeypatch.setenv("STUB_LIVE", str(live))
    result = diff_stage(resolve_target(deployment, "staging", repo_copy))
    assert result.live_found
    assert "very-secret-oauth-value" not in result.text
    assert b64("very-secret-oauth-value") not in result.text
    assert "-    old: label" in result.text
    # (The full chart also renders random generated secrets, so more objects may differ.)
    assert {
        "/".join([docs[0]["kind"], "staging", docs[0]["metadata"]["name"]]),
        "ConfigMap/staging/leak",
        "Secret/staging/hub",
    } <= set(result.changed)
