"""The log screen's state as plain data: the lines kept, the search, where the matches are,
and the one-line header that says what is shown (pure; console/screens/logs.py draws it).

The newest CAPACITY lines are kept (a chatty pod followed for hours stays bounded in
memory: 5,000 lines of 200 characters is about 1 MB). A search is a case-insensitive
regular expression, or a plain substring when it is not a valid one (a user typing
`error(` gets what was typed, not an error).
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field

CAPACITY = 5000
# tail choices, k9s style: a key per starting point (None: the whole log, from the start)
TAIL_KEYS: dict[str, int | None] = {"0": None, "1": 100, "2": 1000}
DEFAULT_TAIL = 100


def compile_search(text: str) -> re.Pattern[str] | None:
    if not text:
        return None
    try:
        return re.compile(text, re.IGNORECASE)
    except re.error:
        return re.compile(re.escape(text), re.IGNORECASE)


@dataclass
class LogModel:
    node: str
    uuid: str
    app: str = ""
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=CAPACITY))
    dropped: int = 0  # lines that fell out of the window
    follow: bool = True  # keep the newest line in view
    wrap: bool = False
    tail: int | None = DEFAULT_TAIL
    search: str = ""
    current: int = -1  # index (into lines) of the match the cursor is on
    connected: bool = False
    error: str = ""
    ended: str = ""  # "exited (code 3)" once the stream said the pod ended

    def add(self, new: list[str]) -> None:
        overflow = len(self.lines) + len(new) - CAPACITY
        if overflow > 0:
            self.dropped += overflow
            self.current = max(-1, self.current - overflow)
        self.lines.extend(new)

    def restart(self, tail: int | None) -> None:
        """A new stream from another starting point: what was shown goes."""
        self.tail = tail
        self.lines.clear()
        self.dropped = 0
        self.current = -1
        self.ended = ""

    def end(self, record: dict[str, object]) -> None:
        state = str(record.get("state") or "ended")
        code = record.get("exit_code")
        self.ended = f"{state} (code {code})" if code is not None else state

    # -- search
    def matches(self) -> list[int]:
        pattern = compile_search(self.search)
        if pattern is None:
            return []
        return [i for i, line in enumerate(self.lines) if pattern.search(line)]

    def step(self, forward: bool) -> int | None:
        """The next (or previous) match from the current one, wrapping round; None if none.
        Moving to a match stops following (the view stays where the match is)."""
        found = self.matches()
        if not found:
            self.current = -1
            return None
        if forward:
            later = [i for i in found if i > self.current]
            self.current = later[0] if later else found[0]
        else:
            earlier = [i for i in found if i < self.current]
            self.current = earlier[-1] if earlier else found[-1]
        self.follow = False
        return self.current

    def title(self) -> str:
        who = f"{self.app}@{self.node}" if self.app else self.node
        return f"logs {self.uuid[:8]} {who}"

    def header(self) -> str:
        """One line, short enough for 100 columns: where the log starts, the toggles, how
        many lines, the search, and the stream's state (which pod: `title`)."""
        start = "from the start" if self.tail is None else f"last {self.tail}"
        kept = f"{len(self.lines)} lines" + (f" (+{self.dropped} dropped)" if self.dropped else "")
        parts = [
            start,
            f"follow {'on' if self.follow else 'off'}",
            f"wrap {'on' if self.wrap else 'off'}",
            kept,
        ]
        if self.search:
            found = self.matches()
            at = f"{found.index(self.current) + 1}/" if self.current in found else ""
            parts.append(f"/{self.search} {at}{len(found)}")
        if self.error:
            parts.append(f"error: {self.error}")
        elif self.ended:
            parts.append(f"pod {self.ended}")
        elif not self.connected:
            parts.append("connecting")
        return " │ ".join(parts)
