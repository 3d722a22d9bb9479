"""Test-support code shipped with pangeo-cloud.

Nothing here is imported by the CLI or by what runs in the hub; it is used by
the test suite and by developers who want a real Kubernetes API on loopback
(see :mod:`pangeo_cloud.testing.k8s`).
"""
