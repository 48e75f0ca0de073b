"""Key Vault stand-in: ``GET /secrets/{name}[/{version}]`` behind the bearer challenge, with RBAC.

The first request of a client carries no token and gets Key Vault's ``401`` with a
``WWW-Authenticate: Bearer authorization=..., resource=...`` challenge, as the real service answers;
then tokens from the Entra stand-in are verified (signature, audience, expiry) and the caller's
object id must hold the Secrets User role.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import jwt

from standins.entra import EntraStandIn
from standins.https import Reply, Request, json_reply

__all__ = ["VAULT_RESOURCE", "KeyVaultStandIn"]

VAULT_RESOURCE = "https://vault.azure.net"


@dataclass(frozen=True)
class _Version:
    version: str
    value: str
    content_type: str | None
    created: int
    expires: int | None = None


def _error(status: int, code: str, message: str, inner: str | None = None, challenge: str | None = None) -> Reply:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    if inner:
        body["error"]["innererror"] = {"code": inner}
    return json_reply(status, body, {"WWW-Authenticate": challenge} if challenge else None)


class KeyVaultStandIn:
    """Secrets with versions; ``readers`` are the object ids allowed to read them."""

    def __init__(self, *, entra: EntraStandIn, tenant_id: str) -> None:
        self.url = ""
        self._entra = entra
        self._tenant_id = tenant_id
        self._secrets: dict[str, list[_Version]] = {}
        self.readers: set[str] = set()
        self.reads: Counter[str] = Counter()
        self.unavailable = 0  # answer this many reads with 503
        self._lock = threading.Lock()
        entra.resources.add(VAULT_RESOURCE)

    def set_secret(self, name: str, value: str, *, content_type: str | None = None, expires: int | None = None) -> str:
        """Store a new current version of ``name`` (``expires``: Unix time); returns the version id."""
        version = uuid.uuid4().hex
        with self._lock:
            self._secrets.setdefault(name, []).append(_Version(version, value, content_type, int(time.time()), expires))
        return version

    def delete_secret(self, name: str) -> None:
        """Remove every version of ``name``."""
        with self._lock:
            self._secrets.pop(name, None)

    @property
    def _challenge(self) -> str:
        return f'Bearer authorization="{self._entra.url}/{self._tenant_id}", resource="{VAULT_RESOURCE}"'

    def handle(self, request: Request) -> Reply:
        parts = request.path.strip("/").split("/")
        if request.method != "GET" or parts[0] != "secrets" or len(parts) not in (2, 3):
            return _error(400, "BadParameter", "The request URI is not supported by this stand-in.")
        if not request.query.get("api-version"):
            return _error(400, "BadParameter", "The request URI contains an invalid 'api-version' parameter.")
        authorization = request.header("authorization") or ""
        if not authorization.startswith("Bearer "):
            return _error(
                401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.", challenge=self._challenge
            )
        try:
            claims = self._entra.verify(authorization.removeprefix("Bearer "), audience=VAULT_RESOURCE)
        except jwt.ExpiredSignatureError:
            return _error(401, "Unauthorized", "AKV10032: Token expired.", challenge=self._challenge)
        except jwt.InvalidTokenError as exc:
            return _error(401, "Unauthorized", f"AKV10022: Invalid token: {exc}", challenge=self._challenge)
        if claims.get("oid") not in self.readers:
            return _error(
                403,
                "Forbidden",
                f"Caller is not authorized to perform action on resource.\r\nCaller: appid={claims.get('appid')};"
                f"oid={claims.get('oid')}\r\nAction: 'Microsoft.KeyVault/vaults/secrets/getSecret/action'",
                inner="ForbiddenByRbac",
            )
        with self._lock:
            if self.unavailable > 0:
                self.unavailable -= 1
                return _error(503, "ServiceUnavailable", "The service is temporarily unavailable.")
            name = parts[1]
            self.reads[name] += 1
            versions = self._secrets.get(name, [])
        wanted = parts[2] if len(parts) == 3 and parts[2] else None
        found = next((v for v in reversed(versions) if wanted in (None, v.version)), None)
        if found is None:
            return _error(
                404,
                "SecretNotFound",
                f"A secret with (name/id) {name}{'/' + wanted if wanted else ''} was not found in this key vault. "
                "If you recently deleted this secret you may be able to recover it using the correct recovery "
                "command.",
            )
        body: dict[str, Any] = {
            "value": found.value,
            "id": f"{self.url}/secrets/{name}/{found.version}",
            "attributes": {
                "enabled": True,
                "created": found.created,
                "updated": found.created,
                "recoveryLevel": "Recoverable",
                "recoverableDays": 90,
            },
            "tags": {},
        }
        if found.content_type:
            body["contentType"] = found.content_type
        if found.expires is not None:
            body["attributes"]["exp"] = found.expires
        return json_reply(200, body)
