"""The state machine definitions (ASL files) and how their placeholders are filled."""
