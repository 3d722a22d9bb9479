"""Driving the real tools that touch charts and clusters: helm, sops, kubectl."""
