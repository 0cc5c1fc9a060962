"""Responses rendered from the engine's events: one module per protocol, no re-parsing of our own output."""
