"""An offline kubeconfig: lets a real KubeSpawner exist without a cluster.

KubeSpawner loads a client configuration when it is created; building pod and
PVC manifests never calls the API. This kubeconfig names a closed loopback port,
so any accidental API call fails at once instead of reaching a real cluster.
"""

OFFLINE_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: offline
  cluster: {server: "https://127.0.0.1:9"}
users:
- name: offline
  user: {token: offline}
contexts:
- name: offline
  context: {cluster: offline, user: offline, namespace: pangeo}
current-context: offline
"""
