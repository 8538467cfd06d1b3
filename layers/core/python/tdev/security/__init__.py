"""The security layer: who is calling (tokens, API keys, signed requests), what they may do (RBAC), how
often (rate limits), and the headers every answer carries. Handlers call into these modules; nothing here
knows about HTTP frameworks beyond plain header dictionaries. (The field-level envelope encryption of texts
in the table is a table concern: `tdev.data.fields`.)

    tokens       JWT validation (RS256/ES256 only), JWKS cache with `kid` rotation
    revocation   revoked token ids (Redis key per jti + durable table item) and disabled principals
    issuer       the local issuer (`tdev token`, `tdev serve`): ES256 keys generated on first use
    rbac         roles, permissions, conditions, deny-overrides; policy store, decision cache, audit
    apikeys      machine-client keys: shown once, stored as a hash, 365-day expiry, revocable
    ratelimit    token buckets in Redis (one atomic Lua script) with Retry-After
    signing      HMAC-SHA256 request signatures with a replay-proof nonce store
    headers      security headers, CORS allow-list, body-size limit
    authorizer   the Lambda authorizer's domain: token or API key → identity → API Gateway policy
    authfailures failed-authentication limits per source IP and per API-key id (429 + Retry-After)
    ownership    projects: owner, members, transfer; who may see a project's executions and sessions
"""
