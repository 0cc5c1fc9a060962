"""What every /v1 body shares: text that tokenizers can encode, and the policy for fields we do not serve.

Clients send more than any server honours. A body model declares the fields it honours; the fields
that change nothing here are accepted and ignored (``IGNORED``, the table in docs/fields.md); the
fields that would change the output and cannot be honoured are refused with a 400 naming them
(``REFUSED``, checked by ``refuse_fields``); any other field is accepted, and its name logged once,
so a new client's extras never cost a 400 and never go unnoticed.
"""

from __future__ import annotations

import logging
import threading
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict

from inference.errors import OpenAIError

logger = logging.getLogger(__name__)

_logged: set[str] = set()
_logged_lock = threading.Lock()


def _utf8(value: str) -> str:
    # JSON may carry lone surrogates ("\ud800"); tokenizers cannot encode them and would fail deep in the engine.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode text (it holds a lone surrogate)") from exc
    return value


Text = Annotated[str, AfterValidator(_utf8)]


def log_unknown_once(where: str, name: str) -> None:
    key = f"{where}.{name}"
    with _logged_lock:
        if key in _logged:
            return
        _logged.add(key)
    logger.info("accepted an unknown field %s (ignored); logged once per field name", key)


class ClientModel(BaseModel):
    """A part of a request body as clients send it: known fields validated, the rest kept for the policy."""

    model_config = ConfigDict(extra="allow")

    # Fields that would change the output and cannot be honoured: a 400 naming them when set (anything but
    # null, false or an empty list), with this reason.
    REFUSED: ClassVar[dict[str, str]] = {}
    # Fields with no effect on the output here: accepted silently (docs/fields.md).
    IGNORED: ClassVar[frozenset[str]] = frozenset()
    # Fields a part's kind decides the meaning of, read from ``model_extra`` where it is used: known, so
    # never logged as unknown.
    READ: ClassVar[frozenset[str]] = frozenset()

    def refuse_fields(self, param: str = "") -> None:
        """400 for a refused field that is set; log any field nobody declared, once per name; then the same
        for every nested part (messages, content parts, tools)."""
        prefix = f"{param}." if param else ""
        for name, reason in self.REFUSED.items():
            value = getattr(self, name, None)
            if value is None and self.model_extra:
                value = self.model_extra.get(name)
            # Presence is what counts ({} turns web search on with its defaults); null, false and [] ask nothing.
            if value is not None and value is not False and value != []:
                raise OpenAIError(reason, param=f"{prefix}{name}", code="unsupported_parameter")
        for name in self.model_extra or {}:
            if name not in self.IGNORED and name not in self.REFUSED and name not in self.READ:
                log_unknown_once(type(self).__name__, name)
        for name in type(self).model_fields:
            _refuse_nested(getattr(self, name), f"{prefix}{name}")


def _refuse_nested(value: Any, param: str) -> None:
    if isinstance(value, ClientModel):
        value.refuse_fields(param)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_nested(item, f"{param}[{index}]")
