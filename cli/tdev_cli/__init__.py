"""The `tdev` command line and the embedded local runtime (never shipped to Lambda)."""
