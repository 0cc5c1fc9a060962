"""Stop strings matched on decoded text, across token boundaries, never emitted."""

from __future__ import annotations


class StopStringMatcher:
    def __init__(self, stops: list[str]) -> None:
        self.stops = [stop for stop in stops if stop]
        self._held = ""
        self.matched: str | None = None  # the stop string that matched, once one has

    def feed(self, text: str) -> tuple[str, bool]:
        """Add decoded text; return (text safe to emit, whether a stop string matched)."""
        if not self.stops:
            return text, False
        buffer = self._held + text
        hits = [(pos, stop) for stop in self.stops if (pos := buffer.find(stop)) >= 0]
        if hits:
            first_hit, self.matched = min(hits, key=lambda hit: hit[0])
            self._held = ""
            return buffer[:first_hit], True
        # Hold back the longest tail that could still grow into a stop string.
        hold = 0
        for stop in self.stops:
            for length in range(min(len(stop) - 1, len(buffer)), hold, -1):
                if stop.startswith(buffer[-length:]):
                    hold = length
                    break
        self._held = buffer[len(buffer) - hold :]
        return buffer[: len(buffer) - hold], False

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held
