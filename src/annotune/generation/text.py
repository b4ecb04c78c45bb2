"""Token ids to text while generating: whole UTF-8 characters only, stop strings cut exactly.

A byte-level tokenizer can split one character over several tokens; decoding such a prefix ends in U+FFFD, so
text is released only up to the last complete character. Text that could be the start of a stop string is held
back until it is clear whether the stop string follows, so a stream never shows part of one.
"""

from __future__ import annotations

REPLACEMENT = "\ufffd"


class TextAssembler:
    """Collects generated ids of one answer; :meth:`add` returns the newly released text."""

    def __init__(self, tokenizer, stop: list[str]):
        self.tokenizer = tokenizer
        self.stop = stop
        self.ids: list[int] = []
        self.text = ""  # the answer so far, as far as it is certain
        self.released = 0  # characters of ``text`` handed out
        self.stopped = False  # a stop string was found; ``text`` ends just before it

    def add(self, token_id: int | None, final: bool = False) -> str:
        """Add one id (None adds nothing); with ``final`` everything left is released."""
        if token_id is not None:
            self.ids.append(token_id)
        full = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if not final:
            full = full.rstrip(REPLACEMENT)  # an incomplete character: wait for its remaining bytes
        cut = self._stop_at(full)
        if cut is not None:
            self.stopped = True
            full = full[:cut]
            final = True
        self.text = full
        safe = len(full) if final else len(full) - self._held_back(full)
        piece = full[self.released:max(safe, self.released)]
        self.released = max(safe, self.released)
        return piece

    def _stop_at(self, full: str) -> int | None:
        # Only the new part (plus a stop string's length before it) can hold a stop string not seen before.
        start = max(0, self.released - max((len(s) for s in self.stop), default=0))
        found = [i for i in (full.find(s, start) for s in self.stop) if i >= 0]
        return min(found) if found else None

    def _held_back(self, full: str) -> int:
        """Length of the longest end of ``full`` that begins some stop string."""
        longest = 0
        for s in self.stop:
            for n in range(min(len(s) - 1, len(full)), longest, -1):
                if full.endswith(s[:n]):
                    longest = n
                    break
        return longest
