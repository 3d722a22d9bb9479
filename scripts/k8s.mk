# Loopback Kubernetes control plane for the test suite (included by the main
# Makefile). Binaries are cached in $(PANGEO_TOOLS_DIR) (default
# ~/.cache/pangeo-cloud/bin), state in $(PANGEO_K8S_STATE) (default
# ~/.cache/pangeo-cloud/k8s); neither lives in the repository.
#
#   make k8s-tools   build etcd, kube-apiserver, kube-controller-manager,
#                    kube-scheduler, kubectl and kwok once (slow the first time)
#   make k8s-up      start the plane, or reuse the running one; prints KUBECONFIG
#   make k8s-status  show ports, pids and readiness
#   make k8s-down    stop it (the state directory is kept)

K8S_PYTHON ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)

.PHONY: k8s-tools k8s-up k8s-down k8s-status

k8s-tools:
	bash scripts/install-k8s-tools.sh

k8s-up: k8s-tools
	$(K8S_PYTHON) -m pangeo_cloud.testing.k8s start

k8s-down:
	$(K8S_PYTHON) -m pangeo_cloud.testing.k8s stop

k8s-status:
	$(K8S_PYTHON) -m pangeo_cloud.testing.k8s status
