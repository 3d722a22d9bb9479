"""Start the broker in its pod from the code ConfigMap (``python3 entry.py DIR``).

The broker pod runs the notebook image, which has the broker's libraries
(jupyterhub, tornado, botocore, google-auth) but not our package. The chart
mounts our modules as flat files (``pangeo_cloud.broker.service.py`` ...) plus
this one; :mod:`pangeo_cloud.bundle`, read from the same directory, makes them
importable under their real names, then :func:`pangeo_cloud.broker.service.main` runs.
Standard library only: nothing of ours is importable before the bundle is installed.
"""

import os
import sys


def _start(directory: str) -> int:
    path = os.path.join(directory, "pangeo_cloud.bundle.py")
    with open(path, encoding="utf-8") as f:
        source = f.read()
    loader = {"__name__": "pangeo_cloud_bundle_loader"}
    exec(compile(source, path, "exec"), loader)
    loader["install"](loader["read_directory"](directory))
    # Importable only now: the broker's image has no pangeo_cloud, the bundle above is it.
    from pangeo_cloud.broker.service import main

    return main([])


if __name__ == "__main__":
    sys.exit(_start(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(__file__)))
