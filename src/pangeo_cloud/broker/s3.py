"""S3 scratch credentials: STS AssumeRole of the scratch role with a session policy.

On AWS the broker's own identity (IRSA) may only assume the dedicated scratch
role; the role allows the scratch bucket; the inline session policy of
:mod:`.policy` narrows each session to one user's prefix. Locally the same API
call goes to MinIO's STS endpoint with the keys of a dedicated MinIO user whose
policy allows the bucket (never MinIO's root key), and MinIO enforces the
session policy the same way.

Output: the AWS ``credential_process`` JSON (``Version`` 1). ``Expiration`` is
the earlier of the STS session's end and ``now + lifetime``: STS sessions last
at least 900 s, so a shorter configured lifetime makes clients (botocore
refreshes ``credential_process`` credentials before their Expiration) come back
sooner, while the session itself stays valid until the STS expiry.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

from pangeo_cloud.broker.policy import session_name, session_policy, sts_duration
from pangeo_cloud.broker.providers import ProviderError, register


class S3Provider:
    """Issues per-user S3 credentials through STS AssumeRole."""

    scheme = "s3"

    def __init__(
        self,
        bucket: str,
        role_arn: str,
        *,
        region: str = "",
        sts_endpoint: str = "",
        client: Any = None,
    ) -> None:
        self.bucket = bucket
        self.role_arn = role_arn
        self.region = region or "us-east-1"
        self.sts_endpoint = sts_endpoint
        self._client = client

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> S3Provider:
        """Build from the broker settings (see :mod:`.providers`)."""
        if not settings.get("bucket"):
            raise ProviderError("broker settings: `bucket` (from scratch.url) is missing")
        if not settings.get("roleArn"):
            raise ProviderError(
                "broker settings: `roleArn` (the scratch role to assume) is missing; "
                "set scratchBroker.aws.scratchRoleArn"
            )
        return cls(
            settings["bucket"],
            settings["roleArn"],
            region=settings.get("region") or "",
            sts_endpoint=settings.get("stsEndpoint") or "",
        )

    @property
    def client(self) -> Any:
        """botocore's STS client, with the broker's own credentials from botocore's chain."""
        if self._client is None:
            import botocore.session
            from botocore.config import Config

            session = botocore.session.get_session()
            kwargs: dict[str, Any] = {
                "region_name": self.region,
                "config": Config(retries={"max_attempts": 3, "mode": "standard"}),
            }
            if self.sts_endpoint:
                kwargs["endpoint_url"] = self.sts_endpoint
            self._client = session.create_client("sts", **kwargs)
        return self._client

    def _assume(self, username: str, prefix: str, lifetime: int) -> dict:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = self.client.assume_role(
                RoleArn=self.role_arn,
                RoleSessionName=session_name(username),
                Policy=json.dumps(session_policy(self.bucket, prefix), separators=(",", ":")),
                DurationSeconds=sts_duration(lifetime),
            )
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise ProviderError(
                f"STS AssumeRole of {self.role_arn} refused: "
                f"{error.get('Code', '?')}: {error.get('Message', '')}".strip()
            ) from None
        except BotoCoreError as exc:
            raise ProviderError(f"STS AssumeRole of {self.role_arn} failed: {exc}") from None
        creds = answer["Credentials"]
        expires = creds["Expiration"]
        reported = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=int(lifetime))
        expires = min(expires, reported)
        return {
            "Version": 1,
            "AccessKeyId": creds["AccessKeyId"],
            "SecretAccessKey": creds["SecretAccessKey"],
            "SessionToken": creds["SessionToken"],
            "Expiration": expires.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }

    async def issue(self, username: str, prefix: str, lifetime: int) -> dict:
        """Credentials for ``username`` reaching only ``<bucket>/<prefix>/``."""
        # botocore is synchronous: keep the event loop free for other callers.
        return await asyncio.to_thread(self._assume, username, prefix, lifetime)


register("s3", S3Provider.from_settings)
