"""The console's guard in a cluster: the caller's own Kubernetes identity, checked by RBAC.

Nobody gets in anonymously. A caller proves who they are with a Kubernetes bearer
token, as in the Kubernetes Dashboard: in the ``Authorization`` header (a script, or
an OIDC front proxy passing the user's token), or pasted once into the login form,
which keeps it in an HttpOnly, SameSite=Strict cookie. Each API call is then checked
with a TokenReview and a SubjectAccessReview (``autovision.auth``) for the verb and
resource the app names, in the one namespace this console serves; allowed pairs are
remembered for a few seconds. The console's own service account only reads and
creates what users were allowed to.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from autovision.auth import reviews
from autovision.auth.kubernetes import KubeError, TokenChecker
from autovision.auth.reviews import AccessDeniedError, Permission
from autovision.resources import GROUP

TOKEN_COOKIE: Final = "autovision-console-token"
"""The cookie the login form sets: the caller's token, never readable by the page's scripts."""
NO_TOKEN: Final = "log in with a Kubernetes token (the login page, or Authorization: Bearer TOKEN)"
_NAMED_VERBS: Final = frozenset({"get", "update", "patch", "delete"})


def request_token(request: web.Request) -> str:
    """The caller's token: the Authorization header first, else the login cookie; 401 when neither."""
    header = request.headers.get("Authorization")
    if header:
        return reviews.bearer_token(header)
    cookie = request.cookies.get(TOKEN_COOKIE, "").strip()
    if not cookie or any(c.isspace() for c in cookie):
        raise AccessDeniedError(401, NO_TOKEN)
    return cookie


def permission(verb: str, resource: str, namespace: str, name: str = "") -> Permission:
    """The RBAC permission of a console action: ``resource`` may carry a subresource (``a/b``).

    The object's name is asked about for verbs on one object and for subresources
    (so a grant limited by resourceNames works); a list or a create names none.
    """
    plural, _, subresource = resource.partition("/")
    named = name if verb in _NAMED_VERBS or subresource else ""
    return Permission(verb, GROUP, plural, namespace, subresource=subresource, name=named)


class KubernetesGuard:
    """A ConsoleGuard: TokenReview plus SubjectAccessReview for every call, in the namespace served."""

    def __init__(self, checker: TokenChecker, namespace: str) -> None:
        self._checker = checker
        self._namespace = namespace

    async def check(self, request: web.Request, verb: str, resource: str) -> None:
        """Nothing when the caller may; else 401, 403, 404 (another namespace) or 503 (no API server)."""
        namespace = request.match_info.get("namespace", self._namespace)
        if namespace != self._namespace:
            raise web.HTTPNotFound(text=f"this console serves namespace {self._namespace!r}, not {namespace!r}")
        wanted = permission(verb, resource, namespace, request.match_info.get("name", ""))
        try:
            await self._checker.check(request_token(request), wanted)
        except AccessDeniedError as refused:
            raise _refusal(refused) from None
        except KubeError as error:
            raise web.HTTPServiceUnavailable(text=f"cannot check the token: {error.message}") from error

    async def login(self, token: str) -> None:
        """Accept a token pasted into the login form only when the API server knows it: else 401 or 503."""
        try:
            await self._checker.user(reviews.bearer_token(f"Bearer {token.strip()}"))
        except AccessDeniedError as refused:
            raise _refusal(refused) from None
        except KubeError as error:
            raise web.HTTPServiceUnavailable(text=f"cannot check the token: {error.message}") from error


def _refusal(refused: AccessDeniedError) -> web.HTTPException:
    if refused.status == 401:
        return web.HTTPUnauthorized(text=refused.message, headers={"WWW-Authenticate": "Bearer"})
    return web.HTTPForbidden(text=refused.message)
