"""The /v1 routers, one per protocol; ``inference.api`` mounts them. None imports another."""
