"""Alerting: intake (error analytics' events, CloudWatch alarms) -> suppression -> grouping in a window ->
severity routing to channels; high and critical alerts escalate level by level in a Step Functions state
machine (statemachines/alert_escalation.asl.json) until someone acknowledges them.

    model     the alert and the normalisation of the events that raise one
    policy    the rules from configuration: muted keys, maintenance windows, routing, escalation levels
    channels  email and SMS (SNS), Slack, signed webhooks, PagerDuty Events v2
    service   the operations the handlers call: intake, escalation steps, acknowledge, list
"""
