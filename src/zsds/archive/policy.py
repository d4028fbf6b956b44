"""The archive's one authorization policy: what is restricted, and who may read it.

Restricted ("depot") content is readable by logged-in users only:

* **files** whose home-relative path matches
  :attr:`~zsds.archive.context.ArchiveConfig.restricted_patterns` (streaks, moving-object
  products, alert packets and everything derived from the alert stream -- difference-image
  candidate tables and cutouts --, logs and QA products);
* **rows** of the database tables in
  :attr:`~zsds.archive.context.ArchiveConfig.restricted_tables` (candidates, alerts,
  moving-object tracks, streaks);
* **images** flagged ``restricted`` in the image index (``archive_images.restricted``);
* the proprietary light-curve collection (``COLLECTION=ztf``).

The policy is applied in one place: the app-wide dependency
:func:`zsds.archive.auth.authorize` runs before every route, resolves the caller once
(:func:`zsds.archive.auth.request_user`, with its CSRF and login-throttling checks), looks
the route up in :data:`ROUTES` and

* refuses an anonymous caller with 401 on a :attr:`Rule.LOGIN` route -- and on any route
  that is not listed: a new route is depot-only until it is classified;
* hands every other route an :class:`Access` (``request.state.access``), the policy bound to
  the caller, through which the route's data helpers open files (:meth:`Access.require_path`)
  and select rows (:meth:`Access.may_read_table`, :meth:`Access.image_condition`).

``tests/security/test_authz.py`` checks that every route of the app is listed, and that no
route hands restricted files or rows to an anonymous caller.
"""

from __future__ import annotations

import enum
import fnmatch
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException

from zsds.db.schema import ArchiveImage, User


class Rule(enum.Enum):
    """How a route relates to restricted content."""

    #: Serves nothing restricted (capabilities, object catalogues, login pages).
    PUBLIC = "public"
    #: May serve restricted content: it filters what it returns through :class:`Access`.
    FILTERED = "filtered"
    #: Only for logged-in users (the depot, token issue, on-demand forced photometry).
    LOGIN = "login"
    #: Authenticates its caller itself from ZFPS credentials (``email``/``userpass``) and
    #: serves only the caller's own requests.
    OWN_CREDENTIALS = "own-credentials"


P, F, L, C = Rule.PUBLIC, Rule.FILTERED, Rule.LOGIN, Rule.OWN_CREDENTIALS
#: Every route of the service (FastAPI path template) and its rule. A route missing here is
#: treated as :attr:`Rule.LOGIN` (deny by default).
ROUTES: dict[str, Rule] = {
    # accounts
    "/account/signon/login.do": P, "/account/signon/logout.do": P, "/account/whoami": P,
    "/account/token": L,
    # IBE
    "/ibe/search": P, "/ibe/search/": P, "/ibe/search/ztf": P, "/ibe/search/ztf/": P,
    "/ibe/search/ztf/products": P, "/ibe/search/ztf/products/": P,
    "/ibe/search/ztf/products/{table}": F, "/ibe/data/ztf/products/{path:path}": F,
    "/ibe/sia/ztf/products/{table}": F,
    # light curves, forced photometry
    "/cgi-bin/ZTF/nph_light_curves": F,
    "/cgi-bin/requestForcedPhotometry.cgi": C, "/cgi-bin/batchfp.py/submit": C,
    "/cgi-bin/getBatchForcedPhotometryRequests.cgi": C,
    "/cgi-bin/getForcedPhotometryRequests.cgi": C,
    "/ztf/ops/forcedphot/lc/{token}/{name}": C, "/api/forcedphot": L,
    # IVOA
    "/SCS": P, "/SIA": F, "/SIA/capabilities": P, "/SIA/availability": P, "/capabilities": P,
    "/TAP/sync": F, "/TAP/async": F, "/TAP/async/{jid}": F, "/TAP/async/{jid}/phase": F,
    "/TAP/async/{jid}/results": F, "/TAP/async/{jid}/results/result": F,
    "/TAP/async/{jid}/error": F, "/TAP/async/{jid}/parameters": F,
    "/TAP/async/{jid}/{attr}": F, "/TAP/capabilities": P, "/TAP/availability": P,
    "/TAP/tables": P, "/TAP/tables/{name}": P,
    # depot
    "/depot/{relpath:path}": L, "/ui/api/depot": L, "/ui/depot": F,
    # web UI
    "/": F, "/ui/image": F, "/ui/lightcurves": P, "/ui/lightcurve": P, "/ui/finder": F,
    "/ui/login": P, "/ui/api/images": F, "/ui/api/image.png": F, "/ui/api/pix2world": F,
    "/ui/api/catalog": F, "/ui/api/header": F, "/ui/api/lightcurve": P,
    "/ui/api/periodogram": P, "/ui/api/lightcurve.png": P,
    # operations
    "/api/moving/search": F, "/ui/moving": F, "/ui/api/nights": F, "/ui/api/qa": F,
    "/ui/api/coverage.png": F, "/ui/coverage": F, "/ui/api/alerts": F, "/ui/alerts": F,
    "/ui/alert": F, "/ui/api/cutout.png": F,
}
del P, F, L, C

#: Routes whose POST only carries search parameters (too long for a URL) and changes nothing:
#: the CSRF check of cookie sessions does not apply to them (another site cannot read the
#: answer), so scripts with a cookie jar keep posting searches.
READ_ONLY_POSTS = frozenset({"/TAP/sync", "/SIA", "/api/moving/search", "/ui/moving"})

_CHALLENGE = {"WWW-Authenticate": 'Basic realm="zsds"'}


def login_required(what: str = "login required") -> HTTPException:
    """The 401 of restricted content (with a Basic challenge, as curl and browsers expect)."""
    return HTTPException(status_code=401, detail=what, headers=_CHALLENGE)


@dataclass(frozen=True)
class AccessPolicy:
    """What is restricted (built from the service's configuration).

    Parameters
    ----------
    patterns : tuple of str
        ``fnmatch`` patterns of restricted home-relative paths (``*`` also matches ``/``).
    tables : frozenset of str
        Database tables whose rows are restricted.
    """

    patterns: tuple[str, ...]
    tables: frozenset[str]

    def path_restricted(self, relpath: str) -> bool:
        """Whether a home-relative path is depot content."""
        rel = relpath.strip("/")
        return any(fnmatch.fnmatch(rel, pat) for pat in self.patterns)

    def table_restricted(self, table: str) -> bool:
        """Whether the rows of a database table are depot content."""
        return table in self.tables

    @staticmethod
    def route_rule(path: str | None) -> Rule:
        """The rule of a route (its FastAPI path template); unlisted routes are LOGIN."""
        return ROUTES.get(path or "", Rule.LOGIN)


@dataclass(frozen=True)
class Access:
    """The policy bound to one caller: what this request may read."""

    policy: AccessPolicy
    user: User | None

    @property
    def logged_in(self) -> bool:
        """Whether the caller is authenticated."""
        return self.user is not None

    def may_read_path(self, relpath: str) -> bool:
        """Whether the caller may read a home-relative file."""
        return self.logged_in or not self.policy.path_restricted(relpath)

    def require_path(self, relpath: str) -> None:
        """Raise 401 unless the caller may read a home-relative file."""
        if not self.may_read_path(relpath):
            raise login_required("login required for this product (depot content)")

    def may_read_table(self, table: str) -> bool:
        """Whether the caller may read the rows of a database table."""
        return self.logged_in or not self.policy.table_restricted(table)

    def require_table(self, table: str, what: str | None = None) -> None:
        """Raise 401 unless the caller may read the rows of a database table."""
        if not self.may_read_table(table):
            raise login_required(f"login required: {what or table} are depot content")

    def image_condition(self) -> Any:
        """SQL condition on ``archive_images`` of the images the caller may see (None: all)."""
        return None if self.logged_in else ArchiveImage.restricted.is_(False)

    def require_login(self, what: str) -> None:
        """Raise 401 for an anonymous caller (``what`` says why)."""
        if not self.logged_in:
            raise login_required(f"{what} requires a login")
