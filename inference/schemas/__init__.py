"""Request bodies of /v1, one module per protocol, validated with Pydantic v2 (``common`` holds the policy)."""
