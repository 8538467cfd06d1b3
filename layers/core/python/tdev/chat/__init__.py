"""Conversations: Agent Squad chat history on the single table, and chat turns through AgentSquad."""
