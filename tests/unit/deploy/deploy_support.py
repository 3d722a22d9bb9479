"""Constants and helpers shared by the deploy tests (imported by name, not a fixture)."""

from __future__ import annotations

from pathlib import Path

from repo_support import FIXTURES

TEST_KEY = FIXTURES / "age" / "test-key.txt"
WRONG_KEY = FIXTURES / "age" / "wrong-key.txt"
SECRET_REGEX = "^(client_id|client_secret|apiToken|.*[Tt]oken|.*[Ss]ecret)$"
# What deployments/*/secrets/<stage>-monitoring.enc.yaml hold, with test tokens.
MONITORING_SECRETS = """\
jupyterhub:
  hub:
    services:
      prometheus:
        apiToken: test-prometheus-token
      grafana:
        apiToken: test-grafana-token
    loadRoles:
      prometheus:
        services: [prometheus]
        scopes: [read:metrics]
"""


def age_recipient(key_file: Path) -> str:
    for line in key_file.read_text().splitlines():
        if line.startswith("# public key: "):
            return line.split(": ", 1)[1].strip()
    raise AssertionError(f"no public key comment in {key_file}")


def workflow_pass(monkeypatch, root: Path, deployment: str, stage: str, rev: str = "HEAD") -> str:
    """record_pass as the deploy workflow runs it: the bot's git identity and a run id."""
    from pangeo_cloud.deploy.pass_tags import DEPLOY_TAGGER_EMAIL, DEPLOY_TAGGER_NAME
    from pangeo_cloud.deploy.promotion import record_pass

    with monkeypatch.context() as env:
        env.setenv("GIT_COMMITTER_NAME", DEPLOY_TAGGER_NAME)
        env.setenv("GIT_COMMITTER_EMAIL", DEPLOY_TAGGER_EMAIL)
        env.setenv("GITHUB_RUN_ID", "4242")
        env.setenv("GITHUB_SERVER_URL", "https://github.com")
        env.setenv("GITHUB_REPOSITORY", "pangeo-data/pangeo-cloud")
        return record_pass(root, deployment, stage, rev=rev, note="deploy workflow")
