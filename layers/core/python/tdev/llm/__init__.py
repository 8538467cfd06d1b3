"""The LLM layer: model names ("provider:model-id") resolved to Agno models, prices, error classification.

Every agent talks to a model through an Agno `Model`, so the offline deterministic model (the default when no
cloud credentials exist) and Bedrock run through exactly the same code path.
"""
