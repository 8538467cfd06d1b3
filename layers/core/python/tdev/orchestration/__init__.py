"""Planning: classify a request's intents, decide an agent per intent, and lay the tasks out as a DAG."""
