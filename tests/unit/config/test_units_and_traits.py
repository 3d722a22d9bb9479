"""Sizes read as their consumer reads them, and pass-through config vs the real classes."""

from __future__ import annotations

import pytest

from pangeo_cloud.config import traits
from pangeo_cloud.config.units import parse_byte_spec, parse_quantity
from pangeo_cloud.deploy.validate import validate_all

GIB = 2**30


# --- units -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("8G", 8 * GIB), ("7.5G", int(7.5 * GIB)), ("512M", 512 * 2**20), (1024, 1024), ("1T", 2**40)],
)
def test_kubespawner_sizes_are_powers_of_1024(text, expected):
    assert parse_byte_spec(text) == expected


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("8Gi", "write 8G"),
        ("8GB", "write 8G"),
        ("8g", "write 8G"),
        ("8", "write 8G, or an unquoted number of bytes"),
        ("lots", "a number with K, M, G or T"),
        ("-1G", "positive"),
        ("infG", "positive"),
    ],
)
def test_kubespawner_refuses_what_the_hub_refuses_and_hints_only_accepted_forms(text, hint):
    with pytest.raises(ValueError) as info:
        parse_byte_spec(text)
    message = str(info.value)
    assert hint in message, message
    assert "Gi" not in message.split(":", 1)[-1].replace(f"{text!r}", ""), message


def test_byte_spec_agrees_with_jupyterhub():
    byte_spec = pytest.importorskip("jupyterhub.traitlets", reason="jupyterhub not installed")
    from traitlets import TraitError

    trait = byte_spec.ByteSpecification()
    for text in ("8G", "7.5G", "512M", "1K", "2T", "8Gi", "8GB", "8", "8g", " 8G", 4096, 2.5):
        try:
            want: int | None = trait.validate(None, text)
        except TraitError:
            want = None
        try:
            have: int | None = parse_byte_spec(text)
        except ValueError:
            have = None
        assert have == want, text


@pytest.mark.parametrize(
    ("text", "expected"),
    [("10Gi", 10 * GIB), ("10G", 10e9), ("500m", 0.5), ("1e3", 1000.0), ("128974848", 128974848)],
)
def test_kubernetes_quantities(text, expected):
    assert parse_quantity(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "hint"), [("8K", "8k for 1000s or 8Ki"), ("8GB", "8Gi"), ("8gi", "case-sensitive")]
)
def test_kubernetes_refuses_non_kubernetes_suffixes(text, hint):
    with pytest.raises(ValueError, match=hint):
        parse_quantity(text)


def _failures(paths, target="gcp-us-central1-b/prod", check=None):
    results = validate_all([target], paths, only={"schemas", "promises", "traits"})
    return [
        e for r in results if not r.ok and (check is None or r.check == check) for e in r.errors
    ]


def _append(paths, text: str, name="gcp-us-central1-b", stage="prod"):
    file = paths.deployments / name / "values" / f"{stage}.yaml"
    file.write_text(file.read_text() + text)
    return file


def test_gi_in_singleuser_memory_is_refused_with_the_accepted_form(repo_copy):
    file = _append(repo_copy, "  singleuser:\n    memory:\n      limit: 8Gi\n")
    errors = _failures(repo_copy)
    (error,) = [e for e in errors if "singleuser.memory.limit" in e]
    assert error.startswith(f"{file}:") and "write 8G" in error and "mem_limit" in error


def test_profile_fit_compares_bytes_as_kubespawner_and_kubernetes_read_them(repo_copy):
    # For KubeSpawner 120G is 120 GiB: exactly gcp's pool (120Gi allocatable), 121G is not.
    profile = (
        "  singleuser:\n    profileList:\n      - display_name: Big\n        slug: big\n"
        "        description: big\n        kubespawner_override: {cpu_guarantee: 1, "
        "cpu_limit: 2, mem_guarantee: 1G, mem_limit: %s}\n"
    )
    _append(repo_copy, profile % "120G")  # gcp's pool: 120Gi allocatable
    assert not [e for e in _failures(repo_copy) if "exceed node pool" in e]
    repo_copy_file = repo_copy.deployments / "gcp-us-central1-b" / "values" / "prod.yaml"
    repo_copy_file.write_text(
        repo_copy_file.read_text().replace("mem_limit: 120G", "mem_limit: 121G")
    )
    (error,) = [e for e in _failures(repo_copy) if "exceed node pool" in e]
    assert "121.0 GiB" in error and "120.0 GiB" in error


def test_home_capacity_in_decimal_gigabytes_is_not_the_promised_10gi(repo_copy):
    _append(repo_copy, "  singleuser:\n    storage:\n      capacity: 10G\n")
    (error,) = [e for e in _failures(repo_copy, check="promises") if "capacity" in e]
    assert "9.3 GiB" in error and "Gi is 2^30" in error


def test_node_pool_memory_follows_kubernetes_rules(repo_copy, edit_yaml):
    from pangeo_cloud.config import ConfigError, load_deployment

    file = repo_copy.deployments / "gcp-us-central1-b" / "deployment.yaml"
    edit_yaml(file, "memory: 120Gi", "memory: 120GB")
    with pytest.raises(ConfigError, match="120Gi for powers of 1024"):
        load_deployment("gcp-us-central1-b", repo_copy)


# --- pass-through config vs the real traitlets classes -----------------------------


def test_typo_in_hub_config_names_the_closest_option(repo_copy):
    file = repo_copy.deployments / "gcp-us-central1-b" / "values" / "prod.yaml"
    text = file.read_text().replace(
        "      GitHubOAuthenticator:\n",
        "      GitHubOAuthenticator:\n        allowed_organisations: [pangeo-data:x]\n",
    )
    file.write_text(text)
    (error,) = _failures(repo_copy, check="traits")
    line = text.splitlines().index("        allowed_organisations: [pangeo-data:x]") + 1
    assert error.startswith(
        f"{file}:{line}: jupyterhub.hub.config.GitHubOAuthenticator.allowed_organisations: "
        "GitHubOAuthenticator has no option 'allowed_organisations'"
    ), error
    assert error.endswith("did you mean allowed_organizations?")


@pytest.mark.parametrize(
    ("snippet", "needle"),
    [
        ("    config:\n      KubeSpawnr:\n        image: x\n", "did you mean KubeSpawner?"),
        (
            "    config:\n      Authenticator:\n        auth_refresh_age: soon\n",
            "Authenticator.auth_refresh_age: The 'auth_refresh_age' trait expected an int",
        ),
        (
            "    config:\n      Authenticator:\n        admin_users: alice\n",
            "expected a set, not the str 'alice'",
        ),
        (
            "    config:\n      Spawner:\n        start_timeout: 1.5\n",
            "Spawner.start_timeout: The 'start_timeout' trait expected an int",
        ),
    ],
)
def test_hub_config_keys_and_values_are_checked_by_the_traits(
    repo_copy, edit_yaml, snippet, needle
):
    prod = repo_copy.deployments / "gcp-us-central1-b" / "values" / "prod.yaml"
    edit_yaml(prod, "    config:\n", snippet)
    errors = _failures(repo_copy, check="traits")
    assert any(needle in e and "prod.yaml:" in e for e in errors), errors


def test_kubespawner_override_keys_and_values_are_checked(repo_copy):
    _append(
        repo_copy,
        "  singleuser:\n    profileList:\n      - display_name: S\n        slug: s\n"
        "        description: s\n        kubespawner_override: {cpu_guarantee: 1, cpu_limit: 2,"
        " mem_guarantee: 1G, mem_limit: 2G, imag: x, node_selector: [a]}\n"
        "        profile_options:\n          image:\n            display_name: Image\n"
        "            choices:\n              new:\n                display_name: new\n"
        "                kubespawner_override: {image_pull_polcy: Always}\n",
    )
    errors = _failures(repo_copy, check="traits")
    base = "jupyterhub.singleuser.profileList[0]"
    assert any(f"{base}.kubespawner_override.imag: KubeSpawner has no trait" in e for e in errors)
    assert any("did you mean image?" in e for e in errors)
    assert any(
        f"{base}.kubespawner_override.node_selector: The 'node_selector'" in e for e in errors
    )
    assert any(
        f"{base}.profile_options.image.choices.new.kubespawner_override.image_pull_polcy" in e
        and "did you mean image_pull_policy?" in e
        for e in errors
    ), errors


def test_gateway_settings_the_gateway_refuses_are_reported(repo_copy):
    _append(repo_copy, "  custom:\n    pangeo:\n      scratch:\n        url: [gs://x]\n")
    errors = _failures(repo_copy, check="traits")
    assert any("the gateway would refuse to start" in e and "scratch.url" in e for e in errors)


def test_generated_gateway_config_is_checked_against_dask_gateway_server():
    classes = traits.gateway_classes()
    problems = traits.check_section(
        classes, "KubeClusterConfig", {"idle_timeout": 60.0, "worker_corse": 1}, ("x",)
    )
    assert [p.path for p in problems] == [("x", "worker_corse")]
    assert "did you mean worker_cores?" in problems[0].message


_WITHOUT_HUB_PACKAGES = """
import sys
from importlib.abc import MetaPathFinder

class Block(MetaPathFinder):
    # As if jupyterhub, kubespawner, oauthenticator, dask-gateway-server were not installed.
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in {"jupyterhub", "kubespawner", "oauthenticator", "dask_gateway_server"}:
            raise ImportError(f"No module named {top!r}")
        return None

sys.meta_path.insert(0, Block())
from pangeo_cloud.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_traits_check_is_skipped_with_a_reason_when_packages_are_missing(repo_paths):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_HUB_PACKAGES, "--root", str(repo_paths.root)]
        + ["validate", "local/dev"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    traits_line = next(
        (line for line in result.stdout.splitlines() if " traits " in f"{line} "), ""
    )
    assert traits_line.startswith("ok "), result.stdout + result.stderr
    assert "hub: skipped: its packages are not installed (" in traits_line
    assert "gateway: skipped: its packages are not installed (" in traits_line
    assert "internal error" not in result.stdout
