"""Per-user scratch credentials on a real `pangeo-cloud up`: MinIO + STS, hub, servers, Dask.

Two users (carol, dave) log in and get servers from the local hub; from each
server's environment (its hub token, AWS_CONFIG_FILE whose credential_process
runs the broker's client; no keys) and from a worker of a Dask Gateway cluster
of each, the probe (scratch_probe.py) round-trips data in its own prefix and
tries thirteen ways into the other's prefix or the bucket root, each of which
MinIO must refuse with AccessDenied. Then: bad tokens get 401/403, a deleted
user's server and worker tokens get nothing, and botocore fetches new
credentials once the reported Expiration has passed.

MinIO enforces the session policy; moto (the fallback when MinIO could not be
built) does not, so without MinIO these tests skip.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from scratch_support import broker_get, hub_api

from pangeo_cloud.local import objectstore
from pangeo_cloud.testing.harness import HubUser, UpProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

PROBE = Path(__file__).with_name("scratch_probe.py")
BUCKET = "pangeo-scratch"
# Short enough for the refresh test to see an expiry; STS sessions still last 900 s.
LIFETIME = 20
ATTEMPTS = {
    "list_bucket_root",
    "list_bucket_root_delimited",
    "list_other_prefix",
    "read",
    "head",
    "overwrite",
    "write_new",
    "delete",
    "multipart_upload",
    "copy_out",
    "presign_then_fetch",
    "s3fs_ls_other",
    "zarr_write_other",
}


@pytest.fixture(scope="module")
def up(tmp_path_factory):
    from pangeo_cloud.local.runtime import LocalRuntimeError, find_proxy

    try:
        find_proxy()
    except LocalRuntimeError as exc:
        pytest.skip(str(exc))
    if objectstore.find_minio() is None:
        pytest.skip(
            "MinIO is not built (scripts/install-objectstore.sh); moto, the fallback, "
            "does not enforce session policies, so isolation cannot be tested"
        )
    import os

    env = dict(os.environ, PANGEO_SCRATCH_LIFETIME=str(LIFETIME))
    run = UpProcess(data_dir=tmp_path_factory.mktemp("up"), env=env).start(timeout=240)
    try:
        yield run
    finally:
        run.stop(check=False)


@pytest.fixture(scope="module")
def users(up):
    """carol and dave with running servers; dave's secret planted by the operator."""
    out = {}
    for name in ("carol", "dave"):
        user = HubUser(up.url, name, up.password)
        user.login()
        user.spawn("small")
        user.wait_ready()
        out[name] = up.server_env(name)
    store = up.runtime["store"]
    root = objectstore.s3_client(store["endpoint"], store["access_key"], store["secret_key"])
    for name in out:
        root.put_object(Bucket=BUCKET, Key=f"{name}/secret.txt", Body=f"{name}'s".encode())
    return out


def run_probe(env: dict[str, str], *args: str, timeout: float = 400) -> dict:
    proc = subprocess.run(
        [sys.executable, str(PROBE), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def root_client(up: UpProcess):
    store = up.runtime["store"]
    return objectstore.s3_client(store["endpoint"], store["access_key"], store["secret_key"])


def check_probe(result: dict, own: str) -> None:
    assert result["prefix"] == own
    assert result["has_static_key"] is False
    assert result["own_zarr"] is True
    assert result["own_read"] is True
    assert f"{own}/big.bin" in result["own_list"] or result["own_list"]
    assert result["own_multipart"] == 5
    assert set(result["attempts"]) == ATTEMPTS
    assert result["attempts"] == dict.fromkeys(ATTEMPTS, "AccessDenied")


def test_servers_get_no_keys_and_the_broker_config(up, users):
    store_keys = {up.runtime["store"]["access_key"], up.secrets["broker_access_key"]}
    for name, env in users.items():
        assert "AWS_ACCESS_KEY_ID" not in env and "AWS_SECRET_ACCESS_KEY" not in env
        assert not store_keys & set(env.values()), f"a store key reached {name}'s server"
        assert env["PANGEO_SCRATCH"] == f"s3://{BUCKET}/{name}/"
        config = Path(env["AWS_CONFIG_FILE"]).read_text()
        assert "credential_process" in config and "client.py aws" in config
        assert env["PANGEO_SCRATCH_BROKER_URL"].endswith("/services/scratch-credentials/")


@pytest.mark.parametrize(("user", "other"), [("carol", "dave"), ("dave", "carol")])
def test_server_reaches_own_prefix_only(up, users, user, other):
    result = run_probe(users[user], "server", other)
    check_probe(result, user)
    root = root_client(up)
    body = root.get_object(Bucket=BUCKET, Key=f"{other}/secret.txt")["Body"].read()
    assert body == f"{other}'s".encode()  # untouched by the attempts
    keys = [o["Key"] for o in root.list_objects_v2(Bucket=BUCKET, Prefix=f"{other}/")["Contents"]]
    assert f"{other}/planted" not in keys and f"{other}/mp" not in keys
    assert "Contents" not in root.list_objects_v2(Bucket=BUCKET, Prefix=f"{user}/stolen")


@pytest.mark.parametrize(("user", "other"), [("carol", "dave"), ("dave", "carol")])
def test_dask_worker_reaches_its_owners_prefix_only(up, users, user, other):
    result = run_probe(users[user], "worker", other)
    check_probe(result, user)
    # No key and no server token on workers: only the owner's broker-only token.
    assert result["worker_env"] == {
        "USER": user,
        "AWS_ACCESS_KEY_ID": "",
        "has_server_token": False,
        "has_broker_token": True,
    }


def test_bad_tokens_are_refused_with_one_line(up, users):
    code, message = broker_get(up, None)
    assert code == 401 and "no JupyterHub token" in message
    code, message = broker_get(up, "not-a-token-of-this-hub")
    assert code == 401 and "does not accept this token" in message
    # An expired token of carol's, with the right scope.
    scopes = ["access:services!service=scratch-credentials"]
    short = hub_api(up, "POST", "/users/carol/tokens", {"scopes": scopes, "expires_in": 1})
    wait_for(lambda: broker_get(up, short["token"])[0] != 200, timeout=30)
    code, message = broker_get(up, short["token"])
    assert code == 401 and "does not accept this token" in message
    # A service's token (here the health check's admin service) is not a user's.
    code, message = broker_get(up, up.secrets["health_check_token"])
    assert code == 403 and "only user tokens" in message
    # carol's token without the broker's scope.
    narrow = hub_api(up, "POST", "/users/carol/tokens", {"scopes": ["read:users:name!user"]})
    code, message = broker_get(up, narrow["token"])
    assert code == 403 and "access:services!service=scratch-credentials" in message
    # The server's own token works and gives credentials that expire.
    code, text = broker_get(up, users["carol"]["JUPYTERHUB_API_TOKEN"])
    assert code == 200 and set(json.loads(text)) == {
        "Version",
        "AccessKeyId",
        "SecretAccessKey",
        "SessionToken",
        "Expiration",
    }


def test_botocore_refreshes_after_the_reported_expiry(up, users):
    # Four writes, each after the previous credentials' reported expiry.
    result = run_probe(users["carol"], "refresh")
    assert result["method"] == "custom-process"
    assert result["distinct_keys"] == 4
    assert result["expiries_increase"] is True
    assert result["last"] == "3"


def test_explicit_user_keys_win_over_the_broker(up, users):
    env = dict(users["carol"], AWS_ACCESS_KEY_ID="user-own-key", AWS_SECRET_ACCESS_KEY="x")
    code = "import boto3; c = boto3.Session().get_credentials(); print(c.method, c.access_key)"
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.stdout.split() == ["env", "user-own-key"], proc.stderr


def broker_health(up: UpProcess) -> int:
    url = up.runtime["values"]["jupyterhub"]["custom"]["pangeo"]["scratch"]["broker"]["url"]
    try:
        with urllib.request.urlopen(url + "api/health", timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def set_broker_user(up: UpProcess, status: str) -> None:
    """Enable or disable the broker's own MinIO user (as an operator's mistake would)."""
    store = up.runtime["store"]
    query = {"accessKey": up.secrets["broker_access_key"], "status": status}
    root = (store["endpoint"], store["access_key"], store["secret_key"])
    objectstore.minio_admin(*root, "PUT", "/set-user-status", query)


def wait_for(condition, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.5)


def test_broken_broker_refuses_spawns_and_health_reports_it(up, users):
    from pangeo_cloud.deploy.health import HealthError, HealthOptions, Retry, run_health

    set_broker_user(up, "disabled")
    try:
        wait_for(lambda: broker_health(up) == 503)
        erin = HubUser(up.url, "erin", up.password)
        erin.login()
        with pytest.raises(RuntimeError):
            erin.spawn("small")
            erin.wait_ready(timeout=60)
        model = hub_api(up, "GET", "/users/erin")
        assert not model["servers"], model  # nothing started with wider access
        log = up.log("hub").read_text()
        assert "the scratch-credentials service cannot issue storage credentials" in log
        with pytest.raises(HealthError) as exc:
            run_health(
                HealthOptions(up.url, up.secrets["health_check_token"], retry=Retry(attempts=1)),
                out=lambda _: None,
            )
        assert "step 'scratch-broker'" in str(exc.value) and "HTTP 503" in str(exc.value)
    finally:
        set_broker_user(up, "enabled")
        wait_for(lambda: broker_health(up) == 200)


def test_deleted_user_gets_nothing_new(up, users):
    """Last: deletes dave (server and worker tokens die with the user)."""
    env = users["dave"]
    # What the gateway hands dave's workers.
    scopes = {"scopes": ["access:services!service=scratch-credentials"]}
    worker_token = hub_api(up, "POST", "/users/dave/tokens", scopes)["token"]
    assert broker_get(up, env["JUPYTERHUB_API_TOKEN"])[0] == 200
    assert broker_get(up, worker_token)[0] == 200
    hub_api(up, "DELETE", "/users/dave/server")
    hub_api(up, "DELETE", "/users/dave")
    for token in (env["JUPYTERHUB_API_TOKEN"], worker_token):
        code, message = broker_get(up, token)
        assert code == 401 and "does not accept this token" in message
    # What botocore shows the user's code: the client's one line, no fallback.
    proc = subprocess.run(
        [sys.executable, "-c", "import boto3; boto3.client('s3').list_buckets()"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "scratch credentials: the scratch-credentials broker" in proc.stderr
    assert "HTTP 401" in proc.stderr
