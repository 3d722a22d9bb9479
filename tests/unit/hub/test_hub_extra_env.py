"""singleuser.extraEnv in z2jh's list form reaches the user pod like the mapping form."""

from __future__ import annotations

from hub_unit_support import build_config, hub_values, prepare_spawn

LIST_FORM = [
    {"name": "FOO", "value": "bar"},
    {"name": "MY_NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
]


async def test_list_form_extra_env_reaches_the_pod(make_kubespawner):
    values = hub_values(singleuser={"extraEnv": LIST_FORM})
    c = build_config(values)
    assert c.KubeSpawner.environment["FOO"] == "bar"
    spawner = make_kubespawner(c, name="jane")
    await prepare_spawn(spawner, {"profile": values["singleuser"]["profileList"][0]["slug"]})
    pod = await spawner.get_pod_manifest()
    env = {e.name: e for e in pod.spec.containers[0].env}
    assert env["FOO"].value == "bar"
    assert env["MY_NODE"].value_from == LIST_FORM[1]["valueFrom"]
