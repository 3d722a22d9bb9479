"""The scratch-credentials broker: a JupyterHub service minting per-user scratch credentials.

It runs in its own pod (the chart) or as a hub-managed process (``pangeo-cloud
up``), holds the only cloud identity allowed to mint scratch credentials, and
hands each authenticated user credentials that reach exactly their own scratch
prefix (the one in ``$PANGEO_SCRATCH``, see :mod:`pangeo_cloud.scratch`).

Modules: :mod:`.providers` (the provider interface and registry), :mod:`.policy`
(the S3 session policy), :mod:`.s3` (STS AssumeRole, AWS or MinIO),
:mod:`.gcs` (downscoped Google tokens), :mod:`.service` (the tornado app),
:mod:`.client` (stdlib-only client run by ``credential_process`` in user pods).

It imports nothing from the CLI side (config/, deploy/, commands/, local/).
"""

SERVICE_NAME = "scratch-credentials"
# The scope a JupyterHub token must carry to get credentials from the broker.
ACCESS_SCOPE = f"access:services!service={SERVICE_NAME}"
