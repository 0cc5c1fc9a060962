"""The catalog's views: its pages for people (models, discover, downloads, playground, one module each) and its
admin pages (admin_pages), whose views stay importable from here as catalog/admin.py reads them."""

from __future__ import annotations

from catalog.views.admin_pages import (
    download_action_view,
    download_progress_view,
    download_start_view,
    hub_model_view,
    hub_search_view,
)

__all__ = [
    "download_action_view",
    "download_progress_view",
    "download_start_view",
    "hub_model_view",
    "hub_search_view",
]
