"""`rempart access`: the operator's view of the policy, the request list and the notice queue."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from rempart.access.kinds import ResetPassword
from rempart.access.roles import Role
from rempart.cli import app
from rempart.config import Settings
from rempart.context import RequestContext
from rempart.wiring import open_services
from tests.unit.access.support import new_staff


def test_policy_requests_and_notices(settings: Settings) -> None:
    services = open_services(settings, pool_size=2)
    try:
        first, second = new_staff(services, Role.ADMIN), new_staff(services, Role.ADMIN)
        holder = new_staff(services, Role.CLINICIAN)
        ctx = RequestContext("local", "test")
        made = services.access.requests.submit(
            first.principal(), ctx, ResetPassword(kind="reset-password", account_id=holder.id)
        )
        services.access.requests.approve(second.principal(), ctx, made.id, None)
    finally:
        services.close()
    base = ["--home", str(settings.home), "--database", settings.database_url, "access"]
    runner = CliRunner()
    policy = runner.invoke(app, [*base, "policy"])
    assert policy.exit_code == 0, policy.output
    assert "policy.care_window_days = 30" in policy.output
    listed = runner.invoke(app, [*base, "requests", "--status", "done"])
    assert json.loads(listed.stdout.splitlines()[0])["kind"] == "reset-password"
    notices = runner.invoke(app, [*base, "notices", "--user", holder.username, "--mark-delivered"])
    assert notices.exit_code == 0, (notices.output, notices.exception)
    line = json.loads(notices.stdout.splitlines()[0])
    assert line["to"] == holder.username
    assert line["password_code"]
    again = runner.invoke(app, [*base, "notices", "--user", holder.username])
    assert again.stdout == ""
