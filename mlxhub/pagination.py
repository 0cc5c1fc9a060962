"""The control API's one pagination: limit/offset, with a ceiling on limit."""

from __future__ import annotations

from rest_framework.pagination import LimitOffsetPagination

# DRF's default has no ceiling: a limit past 2**63 reached the database as a number SQLite refuses (a 500).
MAX_PAGE_LIMIT = 1000


class Pagination(LimitOffsetPagination):
    max_limit = MAX_PAGE_LIMIT
