"""How the product's code is laid out: no module grows past what a reader takes in at once."""

from __future__ import annotations

from tests.conftest import REPO

PRODUCT_PACKAGES = ("mlxhub", "catalog", "inference", "routing", "audit")
MAX_LINES = 500


def test_no_product_module_is_over_five_hundred_lines():
    long = {
        str(path.relative_to(REPO)): lines
        for package in PRODUCT_PACKAGES
        for path in (REPO / package).rglob("*.py")
        if "migrations" not in path.parts and (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}
