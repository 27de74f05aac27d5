"""JSON for `rkt run`'s critical path, through the C accelerator `_json` without `import json`.

`import json` pulls in `re` (for three regular expressions) and with it `enum`, `functools`
and `collections`: ~9.5 ms of CPU per `rkt run` in an interpreter started with -S, where the
interpreter itself costs ~10 ms (measured on this kind of machine: `python -S -c pass` 9.8 ms,
`python -S -c "import json"` 19.3 ms). The C scanner and encoder that `json` itself uses are
a builtin module and cost nothing to import; this module calls them the way `json` does.

The output is `json`'s own, byte for byte: `dumps(obj)` is `json.dumps(obj)` and
`dumps(obj, indent=1, sort_keys=True)` is the same call with those arguments (the C encoder
ignores indent, so the indented form is written here, as json.encoder writes it);
`loads(text)` accepts what `json.loads` accepts and raises ValueError (json.JSONDecodeError
is one) on what it rejects. tests/unit/test_rkt_jsonc.py holds them to that.
"""

from __future__ import annotations

import _json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_INF = float("inf")
_CONSTANTS = {"-Infinity": -_INF, "Infinity": _INF, "NaN": float("nan")}
_WS = " \t\n\r"
_encode_str = _json.encode_basestring_ascii


class _Context:
    """What json.scanner.make_scanner reads off a JSONDecoder (its defaults)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__
    memo: dict[str, str] = {}


_scan = _json.make_scanner(_Context())


def _error(msg: str, doc: str, pos: int) -> ValueError:
    from json import JSONDecodeError  # only on a failure: a broken file costs the import

    return JSONDecodeError(msg, doc, pos)


def loads(data: str | bytes) -> Any:
    """`json.loads` for str and UTF-8 bytes (what every file and plugin here produces)."""
    if isinstance(data, bytes | bytearray):
        text = bytes(data).decode("utf-8-sig" if data[:3] == b"\xef\xbb\xbf" else "utf-8")
    else:
        text = data
        if text.startswith("\ufeff"):
            raise _error("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    start = len(text) - len(text.lstrip(_WS))
    try:
        obj, end = _scan(text, start)
    except StopIteration as e:
        raise _error("Expecting value", text, e.value) from None
    rest = len(text) - len(text.rstrip(_WS))
    if end != len(text) - rest:
        raise _error("Extra data", text, end)
    return obj


def _default(o: Any) -> Any:
    raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")


_compact = _json.make_encoder({}, _default, _encode_str, None, ": ", ", ", False, False, True)
_compact_sorted = _json.make_encoder({}, _default, _encode_str, None, ": ", ", ", True, False, True)


def _float(f: float) -> str:
    if f != f:
        return "NaN"
    if f == _INF:
        return "Infinity"
    if f == -_INF:
        return "-Infinity"
    return float.__repr__(f)


def _key(k: Any) -> str:
    if isinstance(k, str):
        return k
    if isinstance(k, float):
        return _float(k)
    if k is True:
        return "true"
    if k is False:
        return "false"
    if k is None:
        return "null"
    if isinstance(k, int):
        return int.__repr__(k)
    raise TypeError(f"keys must be str, int, float, bool or None, not {k.__class__.__name__}")


def _indented(o: Any, level: int, step: str, sort_keys: bool, out: list[str]) -> None:
    """json.encoder._make_iterencode with an indent: item separator ',', key ': '."""
    if isinstance(o, str):
        out.append(_encode_str(o))
    elif o is None:
        out.append("null")
    elif o is True:
        out.append("true")
    elif o is False:
        out.append("false")
    elif isinstance(o, int):
        out.append(int.__repr__(o))
    elif isinstance(o, float):
        out.append(_float(o))
    elif isinstance(o, list | tuple):
        if not o:
            out.append("[]")
            return
        inner = "\n" + step * (level + 1)
        out.append("[" + inner)
        for i, v in enumerate(o):
            if i:
                out.append("," + inner)
            _indented(v, level + 1, step, sort_keys, out)
        out.append("\n" + step * level + "]")
    elif isinstance(o, dict):
        if not o:
            out.append("{}")
            return
        inner = "\n" + step * (level + 1)
        out.append("{" + inner)
        items = sorted(o.items()) if sort_keys else o.items()
        for i, (k, v) in enumerate(items):
            if i:
                out.append("," + inner)
            out.append(_encode_str(_key(k)) + ": ")
            _indented(v, level + 1, step, sort_keys, out)
        out.append("\n" + step * level + "}")
    else:
        _default(o)


def dumps(obj: Any, indent: int | None = None, sort_keys: bool = False) -> str:
    """`json.dumps(obj, indent=indent, sort_keys=sort_keys)` (no other options needed here)."""
    if indent is None:
        return "".join((_compact_sorted if sort_keys else _compact)(obj, 0))
    out: list[str] = []
    _indented(obj, 0, " " * indent, sort_keys, out)
    return "".join(out)
