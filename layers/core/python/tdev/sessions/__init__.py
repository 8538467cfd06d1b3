"""Long-lived sessions (up to 8 h): lifecycle, limits, heartbeats, checkpoints, recovery, sweeping."""
