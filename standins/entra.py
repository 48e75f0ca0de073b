"""Entra ID stand-in: tenant OpenID metadata and the v2.0 token endpoint for client credentials.

Supports ``client_secret`` and ``client_assertion``: a JWT signed with a registered certificate
(checked by signature, ``x5t``/``x5t#S256``, audience, issuer and lifetime), or a token this
tenant issued to a managed identity that one of the app's federated identity credentials trusts
(matched on issuer, subject and audience, then checked for signature and lifetime, as Entra does).
Wrong tenant, client, secret, assertion or scope get Entra's real ``AADSTS`` error shapes; access
tokens are RS256 JWTs with a real ``exp`` that the Key Vault and Graph stand-ins verify.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa

from standins.https import Reply, Request, json_reply

__all__ = ["TOKEN_EXCHANGE_AUDIENCE", "AppRegistration", "EntraStandIn", "FederatedCredential"]

_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# What a federated identity credential's audience must be for Entra ID in the public cloud.
TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class FederatedCredential:
    """An app registration's trust in tokens of another issuer for one subject (Graph's federatedIdentityCredential)."""

    name: str
    issuer: str
    subject: str
    audiences: tuple[str, ...] = (TOKEN_EXCHANGE_AUDIENCE,)


@dataclass
class AppRegistration:
    """An app registration (and its service principal) in one tenant."""

    client_id: str
    tenant_id: str
    object_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    secrets: list[str] = field(default_factory=list)
    certificates: list[x509.Certificate] = field(default_factory=list)
    # Application permissions granted with admin consent, per resource (e.g. Graph → Mail.Send).
    roles: dict[str, list[str]] = field(default_factory=dict)
    federated: list[FederatedCredential] = field(default_factory=list)

    def thumbprints(self) -> dict[str, x509.Certificate]:
        """Each certificate under its base64url SHA-1 (``x5t``) and SHA-256 (``x5t#S256``) thumbprints."""
        found: dict[str, x509.Certificate] = {}
        for certificate in self.certificates:
            found[_b64url(certificate.fingerprint(hashes.SHA1()))] = certificate  # noqa: S303 - x5t is SHA-1
            found[_b64url(certificate.fingerprint(hashes.SHA256()))] = certificate
        return found


def _aadsts(status: int, error: str, code: int, message: str) -> Reply:
    now = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    return json_reply(
        status,
        {
            "error": error,
            "error_description": f"AADSTS{code}: {message} Trace ID: {trace} Correlation ID: {correlation} "
            f"Timestamp: {now}",
            "error_codes": [code],
            "timestamp": now,
            "trace_id": trace,
            "correlation_id": correlation,
        },
    )


class EntraStandIn:
    """The token service. ``url`` is set once its server runs; resources are registered by URI."""

    def __init__(self, *, token_lifetime: int = 3599) -> None:
        self.url = ""
        self.token_lifetime = token_lifetime
        self.apps: dict[str, AppRegistration] = {}
        self.tenants: set[str] = set()
        self.resources: set[str] = set()
        self.token_requests: Counter[str] = Counter()
        self.issued: list[str] = []  # every access token handed out, so tests can look for leaks
        # Answer this many token requests of a client id with 503 temporarily_unavailable.
        self.unavailable: Counter[str] = Counter()
        self.key_requests = 0  # JWKS fetches, so tests can see keys are cached
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_key = self._key.public_key()
        self._lock = threading.Lock()

    def register(self, app: AppRegistration) -> AppRegistration:
        """Add an app registration (its tenant comes into being with it)."""
        self.tenants.add(app.tenant_id)
        self.apps[app.client_id] = app
        return app

    def issuer(self, tenant_id: str) -> str:
        """The v2.0 issuer of this stand-in's tokens in ``tenant_id`` (``https://login.microsoftonline.com/{t}/v2.0``)."""
        return f"{self.url}/{tenant_id}/v2.0"

    def identity_token(
        self, *, tenant_id: str, principal_id: str, client_id: str, audience: str, lifetime: int
    ) -> tuple[str, int]:
        """A token for a managed identity (what its token endpoint hands out); the token and its expiry."""
        now = int(time.time())
        claims = {
            "aud": audience,
            "iss": self.issuer(tenant_id),
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "azp": client_id,
            "oid": principal_id,
            "sub": principal_id,
            "tid": tenant_id,
            "uti": uuid.uuid4().hex,
            "ver": "2.0",
        }
        token = jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": "standin"})
        with self._lock:
            self.issued.append(token)
        return token, now + lifetime

    def api_token(
        self,
        *,
        tenant_id: str,
        audience: str,
        object_id: str,
        client_id: str,
        roles: tuple[str, ...] = (),
        user: bool = False,
        lifetime: int = 3599,
        issued_ago: int = 0,
        issuer: str | None = None,
        signed: bool = True,
    ) -> str:
        """A v2.0 access token for a custom API, as Entra issues one to an app (client credentials) or a
        user (delegated: ``scp``, as a Power Automate connection gets it).

        For tests of refusals: ``issued_ago`` past ``lifetime`` gives an expired token, ``issuer`` another
        tenant's, ``signed=False`` an unsigned (``alg: none``) one, and any ``audience`` another API's.
        """
        now = int(time.time()) - issued_ago
        claims: dict[str, Any] = {
            "aud": audience,
            "iss": issuer or self.issuer(tenant_id),
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "azp": client_id,
            "oid": object_id,
            "sub": object_id,
            "tid": tenant_id,
            "idtyp": "user" if user else "app",
            "uti": uuid.uuid4().hex,
            "ver": "2.0",
        }
        if roles:
            claims["roles"] = list(roles)
        if user:
            claims["scp"] = "user_impersonation"
        if not signed:
            # RFC 7519 section 6.1: an unsecured JWT, header and claims with an empty signature.
            header = _b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
            return f"{header}.{_b64url(json.dumps(claims).encode())}."
        token = jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": "standin"})
        with self._lock:
            self.issued.append(token)
        return token

    def forged_token(self, **claims: Any) -> str:
        """A token shaped like ``api_token``'s but signed by a key this tenant never published (same ``kid``)."""
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        real = jwt.decode(self.api_token(**claims), options={"verify_signature": False})
        return jwt.encode(real, other, algorithm="RS256", headers={"kid": "standin"})

    def verify(self, token: str, *, audience: str) -> dict[str, Any]:
        """Claims of a token this stand-in issued for ``audience``; raises ``jwt.InvalidTokenError``."""
        return jwt.decode(token, self.public_key, algorithms=["RS256"], audience=audience)

    # --- HTTP -----------------------------------------------------------------------------------
    def handle(self, request: Request) -> Reply:
        parts = request.path.strip("/").split("/")
        if len(parts) == 4 and parts[1:] == ["v2.0", ".well-known", "openid-configuration"] and request.method == "GET":
            return self._metadata(parts[0])
        if len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "token"] and request.method == "POST":
            return self._token(parts[0], request)
        if len(parts) == 4 and parts[1:] == ["discovery", "v2.0", "keys"] and request.method == "GET":
            self.key_requests += 1
            return json_reply(200, {"keys": [self._jwk()]})
        return json_reply(404, {"error": "not_found"})

    def _jwk(self) -> dict[str, Any]:
        """The signing key as the tenant's JWKS publishes it (RFC 7517)."""
        numbers = self.public_key.public_numbers()

        def b64(value: int) -> str:
            return _b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))

        return {"kty": "RSA", "use": "sig", "kid": "standin", "n": b64(numbers.n), "e": b64(numbers.e)}

    def _metadata(self, tenant: str) -> Reply:
        if tenant not in self.tenants:
            return _aadsts(
                400,
                "invalid_tenant",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing "
                "into the correct cloud.",
            )
        base = f"{self.url}/{tenant}"
        return json_reply(
            200,
            {
                "issuer": f"{base}/v2.0",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "jwks_uri": f"{self.url}/{tenant}/discovery/v2.0/keys",
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "tenant_region_scope": "EU",
            },
        )

    def _token(self, tenant: str, request: Request) -> Reply:
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        client_id = form.get("client_id", "")
        with self._lock:
            self.token_requests[client_id] += 1
            if self.unavailable[client_id] > 0:
                self.unavailable[client_id] -= 1
                reply = _aadsts(503, "temporarily_unavailable", 90033, "A transient error has occurred. Try again.")
                reply.headers["Retry-After"] = "1"
                return reply
        if tenant not in self.tenants:
            return _aadsts(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
        if form.get("grant_type") != "client_credentials":
            return _aadsts(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
        app = self.apps.get(client_id)
        if app is None or app.tenant_id != tenant:
            return _aadsts(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can "
                "happen if the application has not been installed by the administrator of the tenant.",
            )
        problem = self._authenticate(app, form, f"{self.url}/{tenant}/oauth2/v2.0/token")
        if problem:
            return problem
        scope = form.get("scope", "")
        resource = scope.removesuffix("/.default")
        if not scope.endswith("/.default") or " " in scope:
            return _aadsts(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. Client credential flows must have a scope value "
                "with /.default suffixed to the resource identifier (application ID URI).",
            )
        if resource not in self.resources:
            return _aadsts(
                400,
                "invalid_resource",
                500011,
                f"The resource principal named {resource} was not found in the tenant named {tenant}.",
            )
        return json_reply(200, self._issue(app, resource))

    def _authenticate(self, app: AppRegistration, form: dict[str, str], token_endpoint: str) -> Reply | None:
        if "client_secret" in form:
            if form["client_secret"] in app.secrets:
                return None
            return _aadsts(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret "
                f"value, not the client secret ID, for a secret added to app '{app.client_id}'.",
            )
        if form.get("client_assertion_type") == _ASSERTION_TYPE and "client_assertion" in form:
            return self._check_assertion(app, form["client_assertion"], token_endpoint)
        return _aadsts(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        )

    def _check_assertion(self, app: AppRegistration, assertion: str, token_endpoint: str) -> Reply | None:
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            return _aadsts(401, "invalid_client", 50027, "JWT token is invalid or malformed.")
        if claims.get("iss") != app.client_id:
            # An app signs its own assertions as itself; any other issuer is an external token for
            # workload identity federation.
            return self._check_federated(app, assertion, claims)
        thumbprint = header.get("x5t#S256") or header.get("x5t")
        # msal pads its base64url thumbprints; Entra ignores the padding.
        certificate = app.thumbprints().get(str(thumbprint).rstrip("="))
        if certificate is None:
            return _aadsts(
                401,
                "invalid_client",
                700027,
                f"The certificate with identifier used to sign the client assertion is not registered on application. "
                f"[Reason - The key was not found., Thumbprint of key used by client: '{thumbprint}'].",
            )
        try:
            jwt.decode(
                assertion,
                certificate.public_key(),  # type: ignore[arg-type]
                algorithms=["RS256", "PS256"],
                audience=token_endpoint,
                issuer=app.client_id,
                options={"require": ["exp", "aud", "iss", "sub", "jti"]},
            )
        except jwt.ExpiredSignatureError:
            return _aadsts(401, "invalid_client", 700024, "Client assertion is not within its valid time range.")
        except jwt.InvalidTokenError as exc:
            return _aadsts(401, "invalid_client", 700027, f"Client assertion failed signature validation. ({exc})")
        return None

    def _check_federated(self, app: AppRegistration, assertion: str, claims: dict[str, Any]) -> Reply | None:
        issuer, subject = str(claims.get("iss")), str(claims.get("sub"))
        check = (
            "Please check your federated identity credential Subject, Audience and Issuer against the presented "
            "assertion."
        )
        audiences = claims.get("aud")
        audiences = {audiences} if isinstance(audiences, str) else set(audiences or ())
        trusted = [c for c in app.federated if c.issuer == issuer]
        if not trusted:
            return _aadsts(
                401,
                "invalid_client",
                700211,
                f"No matching federated identity record found for presented assertion issuer '{issuer}'. {check}",
            )
        trusted = [c for c in trusted if c.subject == subject]
        if not trusted:
            return _aadsts(
                401,
                "invalid_client",
                700213,
                f"No matching federated identity record found for presented assertion subject '{subject}'. {check}",
            )
        trusted = [c for c in trusted if audiences & set(c.audiences)]
        if not trusted:
            return _aadsts(
                401,
                "invalid_client",
                700212,
                f"No matching federated identity record found for presented assertion audience "
                f"'{', '.join(sorted(audiences))}'. {check}",
            )
        if not issuer.startswith(f"{self.url}/"):
            # Only this tenant's own keys are known here: other issuers' keys would come from their metadata.
            return _aadsts(401, "invalid_client", 50013, "Assertion failed signature validation.")
        try:
            jwt.decode(
                assertion,
                self.public_key,
                algorithms=["RS256"],
                audience=list(trusted[0].audiences),
                issuer=issuer,
                options={"require": ["exp", "aud", "iss", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            return _aadsts(401, "invalid_client", 700024, "Client assertion is not within its valid time range.")
        except jwt.InvalidTokenError:
            return _aadsts(401, "invalid_client", 50013, "Assertion failed signature validation.")
        return None

    def _issue(self, app: AppRegistration, resource: str) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "aud": resource,
            "iss": f"https://sts.windows.net/{app.tenant_id}/",
            "iat": now,
            "nbf": now,
            "exp": now + self.token_lifetime,
            "appid": app.client_id,
            "azp": app.client_id,
            "oid": app.object_id,
            "sub": app.object_id,
            "tid": app.tenant_id,
            "roles": app.roles.get(resource, []),
            "uti": uuid.uuid4().hex,
        }
        token = jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": "standin"})
        with self._lock:
            self.issued.append(token)
        return {
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
            "ext_expires_in": self.token_lifetime,
            "access_token": token,
        }
