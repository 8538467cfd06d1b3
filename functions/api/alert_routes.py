"""Alert routes: list alerts, acknowledge one (operators and admins: `alert/*`), audited by the guard.

Acknowledging sets the alert's flag; its escalation (statemachines/alert_escalation.asl.json) reads the
flag after each wait and ends ACKNOWLEDGED, so the stop is as durable as the escalation itself."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from tdev.alerts import service

try:  # the package (tests, local runtime) ...
    from functions.api import security
except ImportError:  # ... or deployed, where this folder is the code root
    import security  # type: ignore[no-redef]

router = APIGatewayRouter()

AlertId = Annotated[str, Path(pattern=r"^[0-9a-f]{8,40}$")]


@router.get("/v1/alerts", middlewares=[security.guard("alert/all", "monitor")])
def list_alerts(
    status: Annotated[str | None, Query(pattern=r"^(OPEN|ESCALATING|ACKNOWLEDGED|EXHAUSTED|FAILED)$")] = None,
    severity: Annotated[str | None, Query(pattern=r"^(critical|high|medium|low)$")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=2_000)] = None,
) -> dict[str, Any]:
    page = service.list_alerts(status=status, severity=severity, limit=limit, cursor=cursor)
    return {"alerts": page.items, "next": page.cursor}


@router.post(
    "/v1/alerts/<alert_id>/ack",
    middlewares=[security.guard(lambda a: f"alert/{a.current_event.path.rsplit('/', 2)[-2]}", "acknowledge")],
)
def acknowledge_alert(alert_id: AlertId) -> dict[str, Any]:
    """Acknowledge an alert (again: the same answer); its escalation stops at its next check."""
    identity = security.identity_of(router)
    return service.acknowledge(alert_id, by=identity.principal)
