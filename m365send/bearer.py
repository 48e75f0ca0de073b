"""Entra ID bearer tokens for the app's own API: validated here, against the tenant's published keys.

A token is accepted when it is RS256-signed by a key of the tenant's JWKS (found through its
OpenID metadata, ``{authority}/{tenant}/v2.0/.well-known/openid-configuration``), its issuer is
the tenant (v2.0 ``{authority}/{tenant}/v2.0`` or v1.0 ``https://sts.windows.net/{tenant}/``), its
audience is the API (``M365_API_AUDIENCE``: the application ID URI and/or client id), and it is
within its lifetime (five minutes of clock skew allowed, as Microsoft.Identity.Web does). The
caller is its ``oid``: a user when the token carries delegated scopes (``scp``), else an app; its
``roles`` are the API's app roles granted to it.

Validated in the app rather than by App Service Authentication in front: the same code runs against
the Entra stand-in, and every refusal is tested; Easy Auth cannot run here.
(https://learn.microsoft.com/entra/identity-platform/access-tokens#validate-tokens)

Keys are cached for the worker's life and fetched again when a token names an unknown ``kid``
(Entra rolls its keys), at most once a minute, so a flood of forged ``kid``s costs one request a minute.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from typing import Any

import httpx
import jwt

from m365send.callers import Caller, entra_caller
from m365send.errors import DependencyUnavailable, Unauthenticated
from m365send.names import is_object_id

__all__ = ["EntraBearer"]

log = logging.getLogger(__name__)
_LEEWAY_SECONDS = 300
_REFRESH_SECONDS = 60.0


class EntraBearer:
    """Turns an ``Authorization: Bearer`` token into a ``Caller``; one per worker."""

    def __init__(
        self,
        *,
        http: httpx.Client,
        authority_host: str,
        tenant_id: str,
        audiences: Collection[str],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._tenant = tenant_id
        self._metadata_url = f"{authority_host.rstrip('/')}/{tenant_id}/v2.0/.well-known/openid-configuration"
        self._issuers = [f"{authority_host.rstrip('/')}/{tenant_id}/v2.0", f"https://sts.windows.net/{tenant_id}/"]
        self._audiences = list(audiences)
        self._clock = clock
        self._keys: jwt.PyJWKSet | None = None
        self._fetched_at: float | None = None
        self._lock = threading.Lock()

    def caller(self, authorization: str) -> Caller:
        """The caller a bearer token proves; ``Unauthenticated`` says why a token is refused."""
        token = authorization.partition(" ")[2].strip()
        if not token:
            raise Unauthenticated("the Authorization header has no bearer token", error="invalid_request")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise Unauthenticated("the bearer token is not a JWT") from None
        if header.get("alg") != "RS256":
            raise Unauthenticated(f"the bearer token is not signed with RS256 (alg {str(header.get('alg'))[:16]!r})")
        key = self._key(str(header.get("kid", "")))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=self._audiences,
                issuer=self._issuers,
                leeway=_LEEWAY_SECONDS,
                options={"require": ["exp", "nbf", "iss", "aud", "oid", "tid"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the bearer token has expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthenticated("the bearer token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated(
                "the bearer token is for another API (its audience is not M365_API_AUDIENCE)"
            ) from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated("the bearer token was not issued by this app's tenant") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("the bearer token's signature is not valid") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(f"the bearer token has no '{exc.claim}' claim") from None
        except jwt.InvalidTokenError:
            raise Unauthenticated("the bearer token is not valid") from None
        object_id = str(claims["oid"])
        if str(claims["tid"]).lower() != self._tenant.lower() or not is_object_id(object_id):
            raise Unauthenticated("the bearer token was not issued by this app's tenant")
        roles = claims.get("roles") or []
        granted = frozenset(r for r in roles if isinstance(r, str))
        if claims.get("scp") or claims.get("idtyp") == "user":
            return entra_caller("user", object_id, granted)
        return entra_caller("app", object_id, granted)

    def key_count(self) -> int:
        """Read the tenant's signing keys now (``m365send check``); how many there are."""
        with self._lock:
            self._keys = self._fetch()
            self._fetched_at = self._clock()
            return len(self._keys.keys)

    def _key(self, kid: str) -> Any:
        with self._lock:
            keys = self._keys
            stale = self._fetched_at is None or self._clock() - self._fetched_at >= _REFRESH_SECONDS
            if keys is None or (_find(keys, kid) is None and stale):
                keys = self._keys = self._fetch()
                self._fetched_at = self._clock()
        found = _find(keys, kid)
        if found is None:
            raise Unauthenticated("the bearer token's signing key is not one of the tenant's")
        return found.key

    def _fetch(self) -> jwt.PyJWKSet:
        try:
            metadata = self._http.get(self._metadata_url)
            metadata.raise_for_status()
            keys = self._http.get(str(metadata.json()["jwks_uri"]))
            keys.raise_for_status()
            return jwt.PyJWKSet.from_dict(keys.json())
        except (httpx.HTTPError, KeyError, ValueError, jwt.PyJWKSetError) as exc:
            log.warning("the tenant's signing keys could not be read: %s", type(exc).__name__)
            raise DependencyUnavailable(
                "Entra ID's signing keys could not be read to check the bearer token", retry_after=5
            ) from None


def _find(keys: jwt.PyJWKSet, kid: str) -> jwt.PyJWK | None:
    return next((key for key in keys.keys if key.key_id == kid), None)
