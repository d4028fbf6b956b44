"""The async TAP job store: per-owner quotas, bounded parameters, jobs kept in the database
(so they survive a restart)."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from .conftest import ALICE

QUERY = "SELECT TOP 1 oid FROM ztf_objects"


def _bearer(client: TestClient) -> dict[str, str]:
    tok = client.post("/account/token", auth=ALICE).json()["token"]
    return {"Authorization": f"Bearer {tok}"}


def _new_job(client: TestClient, headers: dict | None = None, **data) -> str:
    r = client.post("/TAP/async", data={"QUERY": QUERY, **data}, headers=headers or {},
                    follow_redirects=False)
    assert r.status_code == 303, r.text
    return r.headers["location"]


def test_anonymous_jobs_cannot_evict_a_users_job(client):
    """Issue 19 #4: 200 anonymous jobs evicted a logged-in user's job in 2.5 s."""
    auth = _bearer(client)
    mine = _new_job(client, auth, PHASE="RUN")
    anon = [_new_job(client) for _ in range(210)]
    r = client.get(mine, headers=auth)
    assert r.status_code == 200 and "<uws:phase>COMPLETED</uws:phase>" in r.text
    assert client.get(f"{mine}/results/result", headers=auth).status_code == 200
    # the flood only pushed out the flooder's own oldest jobs
    alive = [client.get(u).status_code for u in anon[:3] + anon[-3:]]
    assert alive == [404] * 3 + [200] * 3


def test_user_quota(app, client):
    """A user keeps at most ``tap_jobs_per_user`` jobs: their own finished jobs make room;
    when all are pending, a new one is refused with 429."""
    from zsds.archive.tapjobs import JobStore

    store = JobStore(app.state.ctx.engine, per_user=3)
    old = app.state.tap_jobs if hasattr(app.state, "tap_jobs") else None
    app.state.tap_jobs = store
    try:
        auth = _bearer(client)
        for jid in [j.id for j in store.jobs(ALICE[0])]:
            store.delete(jid, ALICE[0])
        done = _new_job(client, auth, PHASE="RUN")
        pending = [_new_job(client, auth) for _ in range(2)]
        pending.append(_new_job(client, auth))  # the finished one makes room
        assert client.get(done, headers=auth).status_code == 404
        r = client.post("/TAP/async", data={"QUERY": QUERY}, headers=auth,
                        follow_redirects=False)
        assert r.status_code == 429 and "quota" in r.text
        assert all(client.get(u, headers=auth).status_code == 200 for u in pending)
    finally:
        if old is not None:
            app.state.tap_jobs = old
        else:
            del app.state.tap_jobs


def test_job_parameters_are_bounded_and_freed(client, engine):
    """Issue 19 #4: each job kept all its form fields (100 x 1 MB fields: ~95 MB resident
    per job, never freed)."""
    from zsds.db.schema import TapJob

    junk = {f"junk{k}": "x" * 100_000 for k in range(20)}
    url = _new_job(client, **junk)
    params = client.get(f"{url}/parameters").text
    assert "junk" not in params and "SELECT TOP 1 oid" in params
    jid = url.rsplit("/", 1)[1]
    with engine.connect() as conn:
        stored = conn.scalar(select(TapJob.params).where(TapJob.id == jid))
    assert set(stored) == {"QUERY"}
    # values are bounded too
    r = client.post("/TAP/async", data={"QUERY": "SELECT oid FROM ztf_objects " * 5000},
                    follow_redirects=False)
    assert r.status_code == 413
    r = client.post("/TAP/async", data={"QUERY": QUERY, "FORMAT": "x" * 5000},
                    follow_redirects=False)
    assert r.status_code == 413
    # deleting a job deletes its row (parameters and result)
    assert client.delete(url, follow_redirects=False).status_code == 303
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(TapJob)
                           .where(TapJob.id == jid)) == 0


def test_jobs_survive_a_restart(app, sec_home, client):
    """Jobs live in the database: a new service process over the same home still has them,
    with their owner and result."""
    from zsds.archive.app import create_app

    auth = _bearer(client)
    url = _new_job(client, auth, PHASE="RUN", FORMAT="csv")
    result = client.get(f"{url}/results/result", headers=auth).text
    restarted = TestClient(create_app(sec_home, app.state.ctx.engine, refresh_index=False))
    r = restarted.get(url.replace("http://testserver", ""), headers=auth)
    assert r.status_code == 200 and "<uws:ownerId>alice@example.org</uws:ownerId>" in r.text
    assert restarted.get(f"{url}/results/result", headers=auth).text == result
    assert restarted.get(url).status_code == 404  # still not anybody else's
