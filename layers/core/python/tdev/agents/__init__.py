"""The built-in software-development agents (their specs; instances are created lazily by the runtime)."""
