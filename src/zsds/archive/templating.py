"""Jinja2 templates of the web UI (``zsds/archive/templates``), shared by the UI routers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from zsds.archive.auth import request_user

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
    return TEMPLATES.TemplateResponse(
        request, name,
        {"nav": NAV, "user": user.username if user else None, "title": ctx.config.title,
         **context},
        status_code=status_code,
    )
