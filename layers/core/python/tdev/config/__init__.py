"""Configuration an operator changes without a redeploy, and feature flags.

- `model`: the typed configuration (what can be tuned, its defaults, which keys are protected);
- `parameters`: Parameter Store, `/t-developer/<env>/config/<key>` and `/t-developer/<env>/flags/<name>`,
  read through Powertools Parameters (cached for the polling interval);
- `live`: the merged configuration a running function uses: defaults -> environment -> Parameter Store;
- `flags`: feature flags evaluated with Powertools Feature Flags plus percentage rollout, sticky variants,
  schedules, targeting, prerequisites and a default on failure;
- `service`: changes, validated, audited (tdev.data.config_audit), approved and rolled back.
"""
