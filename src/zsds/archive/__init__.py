"""The archive service: IRSA-compatible APIs, the web UI and the authenticated depot.

``zsds serve --home H`` runs :func:`zsds.archive.app.create_app` under uvicorn. Every router
reads the shared :class:`zsds.archive.context.ArchiveContext` from ``request.app.state.ctx``.
See ``docs/archive.md``.
"""
