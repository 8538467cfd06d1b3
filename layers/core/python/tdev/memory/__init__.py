"""Hierarchical memory (working / short-term / long-term) and the per-session context manager."""
