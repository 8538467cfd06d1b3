"""Configuration an operator changes without a redeploy, and feature flags.

- `model`: the typed configuration (what can be tuned, its defaults, which keys are protected);
- `parameters`: Parameter Store, `/t-developer/<env>/config/<key>`, read through Powertools Parameters
  (cached for the polling interval);
- `flag_store`: the feature flags' AWS AppConfig store (one hosted freeform profile holding every flag,
  deployed to the environment), read through Powertools' AppConfigProvider (cached for the interval);
- `live`: the merged configuration a running function uses: defaults -> environment -> Parameter Store,
  and the deployed flags;
- `flags`: feature flags evaluated with Powertools Feature Flags plus percentage rollout, sticky variants,
  schedules, targeting, prerequisites and a default on failure;
- `service`: changes, validated, audited (tdev.data.config_audit), approved and rolled back.
"""
