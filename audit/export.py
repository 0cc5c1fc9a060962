"""Audit rows as CSV, streamed: shared by the admin's export action and the usage page's export."""

from __future__ import annotations

import csv
from collections.abc import Iterator

from django.db.models import QuerySet
from django.http import StreamingHttpResponse

from audit.constants import AUDIT_FIELDS
from audit.models import AuditLog


class _Echo:
    """A file-like object that hands back what csv.writer writes, for streaming."""

    def write(self, value: str) -> str:
        return value


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP's CSV injection list): a client
# chooses `model_requested`, so such a cell is prefixed with a quote and read as text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: object) -> object:
    """A text cell that a spreadsheet would evaluate, neutralised; numbers and other values unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return f"'{value}"
    return value


def _csv_values(row: AuditLog) -> list[object]:
    values: list[object] = []
    for name in AUDIT_FIELDS:
        value = getattr(row, name)
        if name == "user":
            value = value.get_username() if value is not None else None
        elif name == "team":
            value = value.slug if value is not None else None
        values.append("" if value is None else csv_safe(value))
    return values


def audit_csv_response(rows: QuerySet[AuditLog], *, filename: str) -> StreamingHttpResponse:
    writer = csv.writer(_Echo())

    def lines() -> Iterator[str]:
        yield writer.writerow(AUDIT_FIELDS)
        for row in rows.select_related("user", "team").iterator(chunk_size=2000):
            yield writer.writerow(_csv_values(row))

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
