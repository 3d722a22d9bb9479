"""pangeo-cloud's hub configuration, as executed by z2jh.

z2jh's jupyterhub_config.py exec()s every file of
/usr/local/etc/jupyterhub/jupyterhub_config.d in its own namespace, where ``c``
(the traitlets config) and ``get_config`` (z2jh's reader of the chart values)
are defined. The chart mounts this file there as 50-pangeo-cloud.py.

If PANGEO_CLOUD_HUB_CODE names a directory (the hub-code ConfigMap: flat files
``pangeo_cloud.hub.config.py`` ...), our modules are installed from it with
:mod:`pangeo_cloud.bundle`, itself read from that directory, since nothing of
ours is importable in the k8s-hub image. Otherwise (local runtime, tests) the
installed package is imported.

Everything happens inside a function so that no name leaks into z2jh's
namespace, where hub.extraConfig snippets run next.
"""


def _pangeo_cloud_configure(c, get_config):
    # Imports inside the function: z2jh exec()s this file in its shared namespace, and
    # our package becomes importable only once the bundle below is installed.
    import os
    import sys

    code_dir = os.environ.get("PANGEO_CLOUD_HUB_CODE")
    if code_dir:
        path = os.path.join(code_dir, "pangeo_cloud.bundle.py")
        with open(path, encoding="utf-8") as f:
            source = f.read()
        loader = {"__name__": "pangeo_cloud_bundle_loader"}
        exec(compile(source, path, "exec"), loader)
        loader["install"](loader["read_directory"](code_dir))

    from pangeo_cloud.hub.config import CONFIG_ERRORS, configure

    try:
        configure(c, get_config)
    except CONFIG_ERRORS as e:
        # One line, like z2jh's own FATAL messages; no traceback to dig through.
        print(f"FATAL: pangeo-cloud hub configuration: {e}", file=sys.stderr, flush=True)
        sys.exit(1)


_pangeo_cloud_configure(c, get_config)  # noqa: F821 - provided by z2jh
del _pangeo_cloud_configure
