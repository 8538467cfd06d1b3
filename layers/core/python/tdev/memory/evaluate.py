"""Retrieval quality of the context manager on a small labelled set: `python -m tdev.memory.evaluate`.

Thirty context entries in six topics (five each, as a session would accumulate them) and twelve
queries worded differently from the entries. An entry is relevant to a query when it has the query's
topic; precision@5 is the share of relevant entries among the top five, averaged over the queries.
All entries have the same age, so the ranking is decided by semantic similarity alone.
"""

from __future__ import annotations

import sys
import time

from tdev.memory.context import ContextManager
from tdev.memory.embeddings import Embedder, HashingEmbedder, default_embedder

ENTRIES: dict[str, list[str]] = {
    "auth": [
        "Users sign in with a JWT access token that expires after one hour.",
        "Refresh tokens are rotated on every use and revoked on logout.",
        "The login endpoint locks an account after five failed password attempts.",
        "Passwords are hashed with argon2id before they are stored.",
        "Administrators need multi-factor authentication to reach the console.",
    ],
    "database": [
        "Todo items live in a DynamoDB table keyed by user id and item id.",
        "A global secondary index lists items by due date.",
        "Writes use a condition expression so two clients cannot overwrite each other.",
        "Old records expire through the table's time-to-live attribute.",
        "Backups are taken with point-in-time recovery enabled.",
    ],
    "frontend": [
        "The web client is a React single-page application.",
        "Buttons and forms follow the design system's colour palette.",
        "The page shows a spinner while the list of todos loads.",
        "Screen readers announce new todos through an aria-live region.",
        "The layout switches to one column on narrow mobile screens.",
    ],
    "testing": [
        "Unit tests cover the service layer with pytest fixtures.",
        "Integration tests run against an emulated AWS account.",
        "Every pull request must keep line coverage above ninety percent.",
        "Flaky tests are quarantined and tracked in an issue.",
        "Property-based tests generate random todo titles to find edge cases.",
    ],
    "deployment": [
        "The stack is deployed with the AWS CDK from the main branch.",
        "Lambda functions run on arm64 with Python 3.12.",
        "A canary release shifts ten percent of traffic before the full rollout.",
        "Rollbacks happen automatically when the error alarm fires.",
        "Each environment, dev, staging and prod, has its own account.",
    ],
    "billing": [
        "Customers pay a monthly subscription charged by card.",
        "Invoices are emailed as PDF documents at the start of each month.",
        "A failed payment is retried three times before the plan is downgraded.",
        "Prices are shown in the customer's local currency.",
        "Refunds are issued within fourteen days of a purchase.",
    ],
}

QUERIES: list[tuple[str, str]] = [
    ("how do people log in and stay authenticated?", "auth"),
    ("what protects accounts against password guessing?", "auth"),
    ("where is the data stored and how is it indexed?", "database"),
    ("how do we avoid lost updates when saving records?", "database"),
    ("what does the user interface look like on phones?", "frontend"),
    ("is the UI accessible for blind users?", "frontend"),
    ("how is the code verified before merging?", "testing"),
    ("what is our policy on unreliable test cases?", "testing"),
    ("how does a new version reach production safely?", "deployment"),
    ("which runtime and CPU architecture do the functions use?", "deployment"),
    ("what happens when a credit card charge fails?", "billing"),
    ("how do clients get their receipts?", "billing"),
]


def precision_at_k(embedder: Embedder, k: int = 5) -> tuple[float, dict[str, float]]:
    """Mean precision@k over QUERIES, and the per-query figures."""
    context = ContextManager(embedder)
    now = time.time()
    topics: dict[str, str] = {}
    for topic, texts in ENTRIES.items():
        for entry in context.add_many(texts, now=now):
            topics[entry.entry_id] = topic
    per_query = {}
    for query, topic in QUERIES:
        hits = context.top_k(query, k, now=now)
        per_query[query] = sum(topics[h.entry.entry_id] == topic for h in hits) / k
    return sum(per_query.values()) / len(per_query), per_query


def main() -> int:
    for embedder in (default_embedder(), HashingEmbedder()):
        started = time.perf_counter()
        mean, per_query = precision_at_k(embedder)
        elapsed = time.perf_counter() - started
        print(f"{embedder.name}: precision@5 = {mean:.3f} over {len(per_query)} queries ({elapsed:.2f} s)")
        for query, value in per_query.items():
            print(f"  {value:.1f}  {query}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
