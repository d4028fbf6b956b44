"""Jinja2 templates of the web UI (``zsds/archive/templates``), shared by the UI routers.

Templates are autoescaped (Starlette turns Jinja2's autoescaping on), hold no inline script
or style (the Content-Security-Policy of :mod:`zsds.archive.security` forbids them: page data
for the scripts goes in ``<script type="application/json">`` blocks) and get the CSRF token
of a cookie session (``csrf_token``) for their forms and scripts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from zsds.archive.auth import COOKIE, request_user
from zsds.archive.security import csrf_token

TEMPLATES = Jinja2Templates(directory=Path(__file__).with_name("templates"))

#: Navigation bar entries (path, label), in order.
NAV = [
    ("/", "Search"),
    ("/ui/lightcurves", "Light curves"),
    ("/ui/moving", "Moving objects"),
    ("/ui/alerts", "Alerts"),
    ("/ui/coverage", "Coverage & QA"),
    ("/ui/depot", "Depot"),
]


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render a template with the navigation bar and the logged-in user."""
    ctx = request.app.state.ctx
    user = request_user(request, ctx)
    cookie = request.cookies.get(COOKIE)
    return TEMPLATES.TemplateResponse(
        request, name,
        {"nav": NAV, "user": user.username if user else None, "title": ctx.config.title,
         "csrf_token": csrf_token(cookie) if user is not None and cookie else "",
         **context},
        status_code=status_code,
    )
