"""`pangeo-cloud deploy`: the plan, its values order (checked with real helm), and a
full run against stand-in cluster commands with real sops, real helm lint/template
and real temporary-file cleanup on success, failure and SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from deploy_support import SECRET_REGEX, TEST_KEY, age_recipient, workflow_pass

from pangeo_cloud.config import ConfigError, Paths, load_deployment, resolve_target
from pangeo_cloud.config.layering import merge_all, values_layers
from pangeo_cloud.deploy import release
from pangeo_cloud.deploy.sops import SopsDecryptor

DEP = "gcp-us-central1-b"
SECRETS = textwrap.dedent(
    """\
    jupyterhub:
      hub:
        config:
          GitHubOAuthenticator:
            client_id: test-client-id
            client_secret: test-client-secret-{stage}
        services:
          health-check:
            apiToken: test-health-token-{stage}
        loadRoles:
          health-check:
            services: [health-check]
            scopes: [admin:users, admin:servers, tokens, access:servers]
    """
)


def test_dry_run_plan_lists_steps_commands_and_values_in_order(repo_paths: Paths) -> None:
    deployment = load_deployment(DEP, repo_paths)
    lines: list[str] = []
    plan = release.dry_run(
        resolve_target(deployment, "staging", repo_paths), out=lines.append, checks=False
    )
    assert [s.name for s in plan.steps] == list(release.STEPS)
    data = plan.as_dict()
    assert [v["file"] for v in data["values"]] == [
        "<tmp>/00-generated-stage-wiring.yaml",
        f"deployments/{DEP}/values/common.yaml",
        f"deployments/{DEP}/values/staging.yaml",
        f"<tmp>/03-{DEP}--staging.yaml",
        f"<tmp>/04-{DEP}--staging-monitoring.yaml",
        "<tmp>/05-generated-protections.yaml",
        "<tmp>/06-generated-gateway-hooks.yaml",
        "<tmp>/07-generated-price-table.yaml",
    ]
    assert data["values"][3]["source"] == f"deployments/{DEP}/secrets/staging.enc.yaml"
    commands = {s["name"]: s["command"] for s in data["steps"]}
    assert commands["dependencies"][1:] == ["dependency", "build", "helm-chart/pangeo-cloud"]
    assert commands["crds"][1:] == [
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=pangeo-cloud",
        "-f",
        "<tmp>/crds/",
    ]
    upgrade = commands["upgrade"]
    assert upgrade[1:7] == [
        "upgrade",
        "--install",
        "staging",
        "helm-chart/pangeo-cloud",
        "--namespace",
        "staging",
    ]
    files = [upgrade[i + 1] for i, arg in enumerate(upgrade) if arg == "-f"]
    assert files == [v["file"] for v in data["values"]]
    assert upgrade[-4:] == ["--atomic", "--wait", "--timeout", "10m"]
    assert {"--create-namespace", "--atomic", "--wait"} <= set(upgrade)
    assert upgrade[upgrade.index("--timeout") + 1] == "10m"
    text = "\n".join(lines)
    assert "helm upgrade --install staging helm-chart/pangeo-cloud" in text
    assert str(repo_paths.root) not in text  # repository paths are shown relative


def test_kube_context_is_passed_to_every_cluster_command(repo_copy: Paths, edit_yaml) -> None:
    file = repo_copy.deployments / DEP / "deployment.yaml"
    edit_yaml(file, "    release: staging\n", "    release: staging\n    kubeContext: gke-x\n")
    plan = release.dry_run(
        resolve_target(DEP, "staging", repo_copy),
        out=lambda _: None,
        checks=False,
    )
    data = {s["name"]: s["command"] for s in plan.as_dict()["steps"]}
    assert data["cluster"][-2:] == ["--context", "gke-x"]
    assert "--context" in data["crds"] and data["upgrade"][-2:] == ["--kube-context", "gke-x"]


PROBE_TEMPLATE = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: probe
data:
  values: |
{{ toYaml .Values | indent 4 }}
"""


def test_values_order_gives_helm_exactly_the_validated_values(
    repo_copy: Paths, encrypt, sops_env, helm_bin: str, tmp_path: Path
) -> None:
    """Real helm merges the plan's -f files into the values `validate` checked."""
    for stage in ("staging", "prod"):
        encrypt(
            SECRETS.format(stage=stage),
            repo_copy.deployments / DEP / "secrets" / f"{stage}.enc.yaml",
        )
    deployment = load_deployment(DEP, repo_copy)
    decrypt = SopsDecryptor()
    layers = values_layers(deployment, "staging", paths=repo_copy, decrypt=decrypt)
    expected = merge_all(layers)
    probe = tmp_path / "probe"
    (probe / "templates").mkdir(parents=True)
    (probe / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.1.0\n")
    (probe / "values.yaml").write_text((repo_copy.chart / "values.yaml").read_text())
    (probe / "templates" / "probe.yaml").write_text(PROBE_TEMPLATE)
    tmp = tmp_path / "values"
    tmp.mkdir()
    plan = release.build_plan(resolve_target(deployment, "staging", repo_copy), layers, tmp=tmp)
    for vf in plan.values:
        if vf.kind == "generated":
            vf.path.write_text(yaml.safe_dump(vf.data))
        elif vf.kind == "secrets":
            vf.path.write_text(decrypt(vf.source))
    upgrade = plan.step("upgrade").command
    files = [upgrade[i + 1] for i, arg in enumerate(upgrade) if arg == "-f"]
    assert files == [str(vf.path) for vf in plan.values]
    args = [helm_bin, "template", "probe", str(probe)]
    for file in files:
        args += ["-f", file]
    rendered = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    got = yaml.safe_load(yaml.safe_load(rendered)["data"]["values"])
    assert got == expected
    oauth = got["jupyterhub"]["hub"]["config"]["GitHubOAuthenticator"]
    assert oauth["client_secret"] == "test-client-secret-staging"


# --- a full run against stand-in cluster commands -------------------------------

STUB = """\
#!{python}
# Stand-in for `{name}`: cluster-touching subcommands are recorded; the rest runs
# the real tool.
import json, os, sys, stat, time, tarfile, io, pathlib
args = sys.argv[1:]
log = pathlib.Path(os.environ["STUB_LOG"])
def record(entry):
    with log.open("a") as out:
        out.write(json.dumps(entry) + "\\n")
name = {name!r}
if name == "kubectl":
    if args[0] == "version":
        if os.environ.get("STUB_UNREACHABLE"):
            print("The connection to the server 127.0.0.1:1 was refused", file=sys.stderr)
            sys.exit(1)
        print(json.dumps({{"serverVersion": {{"gitVersion": "v1.33.0"}}}}))
        sys.exit(0)
    if args[0] == "apply":
        d = pathlib.Path(args[-1])
        record({{"tool": name, "args": args, "files": sorted(p.name for p in d.iterdir())}})
        sys.exit(0)
    sys.exit(f"stub kubectl: unexpected {{args}}")
if args[:2] == ["dependency", "build"]:
    chart = pathlib.Path(args[2])
    (chart / "charts").mkdir(exist_ok=True)
    with tarfile.open(chart / "charts" / "dask-gateway-2026.3.0.tgz", "w:gz") as tar:
        for crd in sorted(pathlib.Path(os.environ["STUB_CRDS"]).glob("*.yaml")):
            tar.add(crd, arcname=f"dask-gateway/crds/{{crd.name}}")
    record({{"tool": name, "args": args}})
    sys.exit(0)
if args[0] == "upgrade":
    files = [args[i + 1] for i, a in enumerate(args) if a == "-f"]
    record({{"tool": name, "args": args, "files": [
        {{"path": f, "mode": oct(stat.S_IMODE(os.stat(f).st_mode)),
          "dir_mode": oct(stat.S_IMODE(os.stat(os.path.dirname(f)).st_mode)),
          "text": open(f).read()}} for f in files]}})
    if os.environ.get("STUB_UPGRADE_SLEEP"):
        import signal
        def on_signal(signum, frame):
            record({{"tool": name, "signal": signum}})
            sys.exit(1)
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        print("upgrading", flush=True)
        time.sleep(float(os.environ["STUB_UPGRADE_SLEEP"]))
    if os.environ.get("STUB_UPGRADE_FAIL"):
        print("Error: UPGRADE FAILED: release staging failed, and has been rolled back "
              "due to atomic being set: context deadline exceeded", file=sys.stderr)
        sys.exit(1)
    sys.exit(0)
os.execv({real!r}, [{real!r}, *args])
"""


@pytest.fixture
def stub_cluster(tmp_path: Path, helm_bin: str, upstream_dir: Path, monkeypatch) -> Path:
    """helm and kubectl stand-ins first on PATH; returns the log file."""
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
    monkeypatch.setenv("STUB_CRDS", str(upstream_dir / "dask-gateway-2026.3.0" / "crds"))
    return log


@pytest.fixture
def deploy_repo(repo_copy: Paths, encrypt, sops_env, request) -> Paths:
    """A git repository whose secrets are encrypted to the test key."""
    for name in ("gcp-us-central1-b", "aws-us-west-2"):
        for stage in ("staging", "prod"):
            encrypt(
                SECRETS.format(stage=stage),
                repo_copy.deployments / name / "secrets" / f"{stage}.enc.yaml",
            )
    paths, _ = request.getfixturevalue("git_repo")
    return paths


def _entries(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_deploy_runs_every_step_and_removes_plaintext(deploy_repo: Paths, stub_cluster) -> None:
    lines: list[str] = []
    plan = release.deploy(resolve_target(DEP, "staging", deploy_repo), out=lines.append)
    progress = [line for line in lines if line.startswith("[")]
    assert [p.split("]")[0] + "]" for p in progress] == [f"[{i}/8]" for i in range(1, 9)]
    assert [p.split("] ")[1].split(":")[0] for p in progress] == list(release.STEPS)
    assert lines[-1].startswith(f"deployed {DEP}/staging")
    dep, crds, upgrade = _entries(stub_cluster)
    assert dep["args"][:2] == ["dependency", "build"]
    assert crds["args"][:2] == ["apply", "--server-side"]
    assert crds["files"] == ["daskclusters.yaml", "traefik.yaml"]
    files = upgrade["files"]
    assert [Path(f["path"]).name for f in files] == [
        "00-generated-stage-wiring.yaml",
        "common.yaml",
        "staging.yaml",
        f"03-{DEP}--staging.yaml",
        f"04-{DEP}--staging-monitoring.yaml",
        "05-generated-protections.yaml",
        "06-generated-gateway-hooks.yaml",
        "07-generated-price-table.yaml",
    ]
    secret = files[3]
    assert secret["mode"] == "0o600" and secret["dir_mode"] == "0o700"
    assert "test-client-secret-staging" in secret["text"]
    assert files[0]["mode"] == "0o600"
    assert "DASK_GATEWAY__PROXY_ADDRESS" in files[0]["text"]
    assert not Path(secret["path"]).exists() and not Path(secret["path"]).parent.exists()
    assert plan.tmp is not None and not plan.tmp.exists()


def test_failed_upgrade_names_the_step_and_cleans_up(
    deploy_repo: Paths, stub_cluster, monkeypatch
) -> None:
    monkeypatch.setenv("STUB_UPGRADE_FAIL", "1")
    with pytest.raises(release.DeployError) as info:
        release.deploy(
            resolve_target(DEP, "staging", deploy_repo),
            out=lambda _: None,
        )
    message = str(info.value)
    assert "\n" not in message
    assert f"deploy {DEP}/staging failed at step 'upgrade'" in message
    assert "UPGRADE FAILED" in message and "rolled the release back" in message
    upgrade = _entries(stub_cluster)[-1]
    assert all(
        not Path(f["path"]).exists()
        for f in upgrade["files"]
        if "<" not in f["path"] and "deployments" not in f["path"]
    )


def test_prod_refuses_until_staging_passed(deploy_repo: Paths, stub_cluster, monkeypatch) -> None:
    deployment = load_deployment(DEP, deploy_repo)
    with pytest.raises(release.DeployError, match="failed at step 'promotion'.*has not passed"):
        release.deploy(resolve_target(deployment, "prod", deploy_repo), out=lambda _: None)
    assert _entries(stub_cluster) == []  # nothing reached the cluster commands
    workflow_pass(monkeypatch, deploy_repo.root, DEP, "staging")
    lines: list[str] = []
    release.deploy(resolve_target(deployment, "prod", deploy_repo), out=lines.append)
    assert any(f"passed/{DEP}/staging/" in line for line in lines)


def test_missing_key_stops_at_decrypt(deploy_repo: Paths, stub_cluster, monkeypatch) -> None:
    monkeypatch.delenv("SOPS_AGE_KEY_FILE")
    with pytest.raises(release.DeployError) as info:
        release.deploy(
            resolve_target(DEP, "staging", deploy_repo),
            out=lambda _: None,
        )
    assert "at step 'decrypt'" in str(info.value) and "no decryption key" in str(info.value)
    assert "nothing in the cluster was changed" in str(info.value)
    assert _entries(stub_cluster) == []


def test_decrypt_failure_names_a_missing_recipient(
    deploy_repo: Paths, stub_cluster, monkeypatch
) -> None:
    """CI holds the KMS key only; a file encrypted for the age key only is the likely cause."""
    monkeypatch.delenv("SOPS_AGE_KEY_FILE")
    kms = "projects/p/locations/global/keyRings/r/cryptoKeys/sops"
    (deploy_repo.root / ".sops.yaml").write_text(
        f"creation_rules:\n  - path_regex: deployments/{DEP}/secrets/staging.enc.yaml\n"
        f"    encrypted_regex: '{SECRET_REGEX}'\n"
        f"    gcp_kms: {kms}\n    age: {age_recipient(TEST_KEY)}\n"
    )
    with pytest.raises(release.DeployError) as info:
        release.deploy(resolve_target(DEP, "staging", deploy_repo), out=lambda _: None)
    message = str(info.value)
    assert "\n" not in message and "at step 'decrypt'" in message
    assert f"likely cause: {deploy_repo.deployments / DEP / 'secrets' / 'staging.enc.yaml'}" in (
        message
    )
    assert f"not encrypted for gcp_kms {kms}" in message
    assert _entries(stub_cluster) == []


def test_unreachable_cluster_stops_before_changes(
    deploy_repo: Paths, stub_cluster, monkeypatch
) -> None:
    monkeypatch.setenv("STUB_UNREACHABLE", "1")
    with pytest.raises(release.DeployError) as info:
        release.deploy(
            resolve_target(DEP, "staging", deploy_repo),
            out=lambda _: None,
        )
    message = str(info.value)
    assert "at step 'cluster'" in message and "cannot reach the Kubernetes cluster" in message
    assert "\n" not in message and _entries(stub_cluster) == []


def test_unreachable_cluster_with_real_kubectl(
    deploy_repo: Paths, tmp_path: Path, monkeypatch
) -> None:
    from pangeo_cloud.deploy.tools import ToolError, find_tool

    try:
        find_tool("kubectl")
    except ToolError as exc:
        pytest.skip(f"real kubectl not available: {exc}")
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
    with pytest.raises(release.DeployError) as info:
        release.deploy(
            resolve_target(DEP, "staging", deploy_repo),
            out=lambda _: None,
        )
    assert "at step 'cluster'" in str(info.value)
    assert f"KUBECONFIG={kubeconfig}" in str(info.value)


def test_missing_helm_is_one_line(deploy_repo: Paths, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    monkeypatch.setenv("PANGEO_TOOLS_DIR", str(tmp_path / "nothing"))
    with pytest.raises(release.DeployError) as info:
        release.deploy(
            resolve_target(DEP, "staging", deploy_repo),
            out=lambda _: None,
        )
    message = str(info.value)
    assert "\n" not in message and "`helm` not found" in message
    assert "nothing in the cluster was changed" in message


def test_unknown_stage_is_one_line(repo_paths: Paths, capsys, monkeypatch) -> None:
    import pangeo_cloud.cli as cli

    assert cli.main(["--root", str(repo_paths.root), "deploy", DEP, "qa", "--dry-run"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unknown stage 'qa'" in err
    with pytest.raises(ConfigError):
        load_deployment(DEP, repo_paths).stage("qa")


def test_cli_dry_run_json(repo_paths: Paths, capsys, monkeypatch) -> None:
    import pangeo_cloud.cli as cli

    code = cli.main(
        [
            "--root",
            str(repo_paths.root),
            "deploy",
            "aws-us-west-2",
            "prod",
            "--dry-run",
            "--format",
            "json",
        ]
    )
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["target"] == "aws-us-west-2/prod"
    assert data["values"][3]["source"] == "deployments/aws-us-west-2/secrets/prod.enc.yaml"


_CHILD = """\
import sys
from pangeo_cloud.config import Paths, load_deployment, resolve_target
from pangeo_cloud.deploy import release
from pathlib import Path
paths = Paths(Path(sys.argv[1]))
release.deploy(resolve_target(sys.argv[2], "staging", paths),
               out=lambda line: print(line, flush=True))
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_during_upgrade_is_forwarded_and_plaintext_removed(
    deploy_repo: Paths, stub_cluster, monkeypatch, signum: int
) -> None:
    monkeypatch.setenv("STUB_UPGRADE_SLEEP", "60")
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(deploy_repo.root), DEP],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell's background jobs start with SIGINT ignored, and Python then
        # installs no KeyboardInterrupt handler: give the child the default.
        preexec_fn=_default_sigint,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            if "] upgrade:" in line:
                break
        upgrade = None
        while time.monotonic() < deadline and upgrade is None:
            upgrade = next((e for e in _entries(stub_cluster) if e["args"][0] == "upgrade"), None)
            time.sleep(0.1)
        assert upgrade is not None
        secret = Path(upgrade["files"][3]["path"])
        assert secret.exists()
        time.sleep(0.5)  # let the stub install its signal handlers
        proc.send_signal(signum)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert {"tool": "helm", "signal": int(signum)} in _entries(stub_cluster)
    assert not secret.exists() and not secret.parent.exists()


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
