"""Error analytics: every error the platform meets, grouped by signature, counted over time.

    signature   type + normalised message + top in-project frame -> a 16-hex signature (stable across ids)
    recorder    record an exception or a Step Functions failure: one group update, never raising
    analytics   list / show / resolve for the API (`/v1/errors`) and `tdev errors`

Persistence is `tdev.data.incidents`; secrets are redacted by `tdev.redaction` (the logger's redactor)
before anything is stored. New signatures and spikes are announced on the bus through the outbox
(source `t-developer.errors`, detail-types `ErrorSignatureNew` / `ErrorSpikeDetected`), for the
alerting to route.
"""
