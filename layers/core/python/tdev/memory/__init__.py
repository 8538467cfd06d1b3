"""Hierarchical memory (working / short-term / long-term) and the per-session context manager."""

import os

# The local embedding model multiplies small matrices: OpenBLAS's thread pool only adds contention
# there (10x slower on a busy 2-core machine). Takes effect when numpy is first imported after this.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
