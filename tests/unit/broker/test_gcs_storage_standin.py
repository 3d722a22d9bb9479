"""The Cloud Storage stand-in's model of access-boundary evaluation."""

from __future__ import annotations

import pytest

from pangeo_cloud.broker.gcs import access_boundary
from pangeo_cloud.testing.google_storage import allowed

OBJ = "projects/_/buckets/b-1/objects/"
BUCKET = "projects/_/buckets/b-1"


@pytest.mark.parametrize(
    ("permission", "resource", "list_prefix", "expected"),
    [
        ("storage.objects.get", OBJ + "users/alice/a", "", True),
        ("storage.objects.create", OBJ + "users/alice/x/y", "", True),
        ("storage.objects.delete", OBJ + "users/alice/a", "", True),
        ("storage.objects.get", OBJ + "users/alice", "", False),
        ("storage.objects.get", OBJ + "users/alice2/a", "", False),
        ("storage.objects.get", OBJ + "users/bob/a", "", False),
        ("storage.objects.list", BUCKET, "users/alice/", True),
        ("storage.objects.list", BUCKET, "users/alice/x.zarr", True),
        ("storage.objects.list", BUCKET, "users/alice", False),
        ("storage.objects.list", BUCKET, "", False),
        ("storage.objects.list", BUCKET, "users/", False),
        ("storage.buckets.get", BUCKET, "", False),
        ("storage.objects.setIamPolicy", OBJ + "users/bob/a", "", False),
    ],
)
def test_the_users_boundary(permission, resource, list_prefix, expected) -> None:
    boundary = access_boundary("b-1", "users/alice")
    assert allowed(boundary, "b-1", permission, resource, list_prefix) is expected


def test_other_buckets_roles_and_expressions_are_refused() -> None:
    boundary = access_boundary("b-1", "users/alice")
    assert not allowed(
        boundary, "b-2", "storage.objects.get", "projects/_/buckets/b-2/objects/users/alice/a"
    )

    def rule(expression: str, role: str = "roles/storage.objectAdmin") -> dict:
        return {
            "accessBoundary": {
                "accessBoundaryRules": [
                    {
                        "availableResource": "//storage.googleapis.com/" + BUCKET,
                        "availablePermissions": [f"inRole:{role}"],
                        "availabilityCondition": {"expression": expression},
                    }
                ]
            }
        }

    # Outside the stand-in's model: false, even where Google might say true.
    assert not allowed(rule("true"), "b-1", "storage.objects.get", OBJ + "a")
    assert not allowed(rule(f"resource.name == '{OBJ}a'"), "b-1", "storage.objects.get", OBJ + "a")
    # Alternatives joined by ||.
    either = rule(f"resource.name.startsWith('{OBJ}x/') || resource.name.startsWith('{OBJ}y/')")
    assert allowed(either, "b-1", "storage.objects.get", OBJ + "y/1")
    # The role bounds the permissions.
    viewer = rule(f"resource.name.startsWith('{OBJ}x/')", "roles/storage.objectViewer")
    assert not allowed(viewer, "b-1", "storage.objects.delete", OBJ + "x/1")
