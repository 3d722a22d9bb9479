"""`pangeo-cloud deploy DEPLOYMENT support`: the monitoring release, deployed like a stage.

Real sops (secrets encrypted to the test key) and real helm; the cluster-touching
commands (`kubectl version`, `helm upgrade`) are stand-ins that record what
they were given, as in test_deploy.py.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest
import yaml

from pangeo_cloud.config import Paths, load_deployment
from pangeo_cloud.config.layering import merge, merge_all, support_layers
from pangeo_cloud.deploy import release
from pangeo_cloud.deploy.sops import SopsDecryptor
from pangeo_cloud.deploy.support_deploy import DEPLOY_STEPS, deploy_support

DEP = "gcp-us-central1-b"
SUPPORT_SECRETS = """\
pangeo:
  hubs:
    staging: {prometheusToken: staging-metrics-token}
    prod: {prometheusToken: prod-metrics-token}
  grafana: {clientSecret: grafana-client-secret}
"""

STUB = """\
#!{python}
# Stand-in for `{name}`: records cluster-touching calls, runs the real helm otherwise.
import json, os, stat, sys
args = sys.argv[1:]
def record(entry):
    with open(os.environ["STUB_LOG"], "a") as out:
        out.write(json.dumps(entry) + "\\n")
if {name!r} == "kubectl":
    print(json.dumps({{"serverVersion": {{"gitVersion": "v1.33.0"}}}}))
    sys.exit(0)
if args[0] == "upgrade":
    files = [args[i + 1] for i, a in enumerate(args) if a == "-f"]
    record({{"args": args, "files": [
        {{"path": f, "mode": oct(stat.S_IMODE(os.stat(f).st_mode)), "text": open(f).read()}}
        for f in files]}})
    sys.exit(int(os.environ.get("STUB_UPGRADE_CODE", "0")))
os.execv({real!r}, [{real!r}, *args])
"""


@pytest.fixture
def support_repo(repo_copy: Paths, encrypt, sops_env, support_upstream_dir) -> Paths:
    encrypt(SUPPORT_SECRETS, repo_copy.deployments / DEP / "secrets" / "support.enc.yaml")
    return repo_copy


@pytest.fixture
def stub_log(tmp_path: Path, helm_bin: str, monkeypatch) -> Path:
    bindir = tmp_path / "stub-bin"
    bindir.mkdir()
    for name in ("helm", "kubectl"):
        script = bindir / name
        script.write_text(STUB.format(python=sys.executable, name=name, real=helm_bin))
        script.chmod(0o755)
    log = tmp_path / "stub.log"
    log.touch()
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("STUB_LOG", str(log))
    return log


def test_support_deploy_gives_helm_exactly_the_validated_values(support_repo, stub_log):
    deployment = load_deployment(DEP, support_repo)
    lines: list[str] = []
    plan = deploy_support(deployment, support_repo, out=lines.append, dependency_build=False)
    progress = [line.split(":")[0] for line in lines if line.startswith("[")]
    assert progress == [f"[{i}/6] {step}" for i, step in enumerate(DEPLOY_STEPS, 1)]
    assert lines[-1] == f"deployed {DEP}/support: release support in namespace support"
    (upgrade,) = [json.loads(line) for line in stub_log.read_text().splitlines()]
    assert upgrade["args"][:6] == [
        "upgrade",
        "--install",
        "support",
        str(support_repo.support_chart),
        "--namespace",
        "support",
    ]
    assert "--atomic" in upgrade["args"]
    # The chart's values.yaml, then the -f files in order, is what validate merged.
    given = yaml.safe_load((support_repo.support_chart / "values.yaml").read_text())
    for file in upgrade["files"]:
        given = merge(given, yaml.safe_load(file["text"]))
    expected = merge_all(support_layers(deployment, paths=support_repo, decrypt=SopsDecryptor()))
    assert given == expected
    assert given["pangeo"]["grafana"]["clientSecret"] == "grafana-client-secret"
    secret_file = upgrade["files"][-1]
    assert secret_file["mode"] == oct(stat.S_IRUSR | stat.S_IWUSR)
    # Plaintext is gone once the deploy is over.
    assert not Path(secret_file["path"]).exists()
    assert plan.step("dependencies").command is None


def test_failed_upgrade_names_the_step(support_repo, stub_log, monkeypatch):
    monkeypatch.setenv("STUB_UPGRADE_CODE", "1")
    with pytest.raises(release.DeployError, match="at step 'upgrade'.*rolled the release back"):
        deploy_support(
            load_deployment(DEP, support_repo),
            support_repo,
            out=lambda _: None,
            dependency_build=False,
        )


def test_invalid_support_values_stop_before_any_command(support_repo, stub_log):
    values = support_repo.deployments / DEP / "values" / "support.yaml"
    values.write_text(values.read_text() + "  persistance: {enabled: true}\n")
    with pytest.raises(release.DeployError, match="at step 'validate'.*persistance"):
        deploy_support(
            load_deployment(DEP, support_repo),
            support_repo,
            out=lambda _: None,
            dependency_build=False,
        )
    assert stub_log.read_text() == ""


def test_dry_run_needs_no_key_and_no_cluster(repo_copy, stub_log, monkeypatch):
    monkeypatch.delenv("SOPS_AGE_KEY_FILE", raising=False)
    lines: list[str] = []
    plan = deploy_support(
        load_deployment(DEP, repo_copy), repo_copy, out=lines.append, dry_run=True
    )
    text = "\n".join(lines)
    assert "helm upgrade --install support helm-chart/support --namespace support" in text
    assert "decrypted from deployments/gcp-us-central1-b/secrets/support.enc.yaml" in text
    assert [s.name for s in plan.steps] == list(DEPLOY_STEPS)
    assert stub_log.read_text() == ""
