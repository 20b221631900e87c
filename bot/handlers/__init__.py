"""Routers per role and chat: thin handlers that turn updates into service calls."""
