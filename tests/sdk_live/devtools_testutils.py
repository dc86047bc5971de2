"""Stand-in for azure-sdk-for-python's ``devtools_testutils`` (not on PyPI), which the Event Hubs
live tests import: a region for resources they do not create here, and an Entra ID credential.

The credential hands out a fixed bearer token: the local endpoint accepts Entra ID tokens for their
audience without verifying them (it cannot reach Entra ID), so the SDK's JWT ``$cbs`` path runs.
"""

from __future__ import annotations

import time

from azure.core.credentials import AccessToken


def get_region_override(default: str = "westus") -> str:
    return default


class _StaticToken:
    def get_token(self, *scopes, **kwargs):
        return AccessToken("local-test-token", int(time.time()) + 3600)

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *args):
        pass


class _AsyncStaticToken:
    async def get_token(self, *scopes, **kwargs):
        return AccessToken("local-test-token", int(time.time()) + 3600)

    async def close(self):
        pass

    async def __aenter__(self):
        return self

    async def __aexit__(self, *args):
        pass


def get_credential(is_async: bool = False, **kwargs):
    return _AsyncStaticToken() if is_async else _StaticToken()
