"""Writing resources: YAML and JSON as calicoctl prints them, and the ps/wide tables."""

from __future__ import annotations

import json
import re
from typing import Any

from calicoctl import tables
from calicoctl.context import Cli

OUTPUT_FORMATS = ("ps", "wide", "yaml", "json")
API_VERSION = "projectcalico.org/v3"


def list_doc(kind: str, items: list[dict[str, Any]], revision: int | None) -> dict[str, Any]:
    doc: dict[str, Any] = {"apiVersion": API_VERSION, "items": items, "kind": kind}
    doc["metadata"] = {"resourceVersion": str(revision)} if revision else {}
    return doc


def dump(doc: Any, fmt: str) -> str:
    """YAML or JSON with keys sorted, as kubectl prints objects; for a resource that is
    also calicoctl's apiVersion, kind, metadata, spec order."""
    if fmt == "json":
        return json.dumps(doc, indent=2, sort_keys=True) + "\n"
    return to_yaml(doc)


# Characters a plain (unquoted) YAML scalar may use here; anything else is double-quoted.
_PLAIN = re.compile(r"[A-Za-z0-9_/(][A-Za-z0-9_./()=!:-]*")
_resolver: Any = None


def _yaml_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return ".nan"
        if value in (float("inf"), float("-inf")):
            return ".inf" if value > 0 else "-.inf"
        text = repr(value)
        return text.replace("e", ".0e") if "e" in text and "." not in text else text
    text = str(value)
    if _PLAIN.fullmatch(text) and not text.endswith(":"):
        global _resolver
        if _resolver is None:
            import yaml

            _resolver = yaml.resolver.Resolver()
            _resolver.node = yaml.ScalarNode
        # Plain only if a YAML reader takes it back as this string (not yes/no, 1:20, ...).
        if _resolver.resolve(_resolver.node, text, (True, False)) == "tag:yaml.org,2002:str":
            return text
    return json.dumps(text)  # a JSON string is a valid YAML double-quoted scalar


def _yaml_lines(value: Any, pad: str, out: list[str]) -> None:
    if isinstance(value, dict):
        for key in sorted(value):
            item = value[key]
            head = f"{pad}{_yaml_scalar(key)}:"
            if isinstance(item, dict) and item:
                out.append(head)
                _yaml_lines(item, pad + "  ", out)
            elif isinstance(item, list) and item:
                out.append(head)
                _yaml_lines(item, pad, out)
            else:
                out.append(f"{head} {_yaml_block_scalar(item)}")
    else:
        for item in value:
            if isinstance(item, dict | list) and item:
                start = len(out)
                _yaml_lines(item, pad + "  ", out)
                out[start] = f"{pad}- {out[start][len(pad) + 2 :]}"
            else:
                out.append(f"{pad}- {_yaml_block_scalar(item)}")


def _yaml_block_scalar(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _yaml_scalar(value)


def to_yaml(doc: Any) -> str:
    """Block-style YAML for JSON-shaped data (dicts, lists, strings, numbers, booleans,
    null), keys sorted; what PyYAML's safe_dump writes, without its per-node overhead
    (10x faster on a listing of thousands of endpoints). Strings that a YAML reader could
    take for something else are double-quoted."""
    out: list[str] = []
    if isinstance(doc, dict | list) and doc:
        _yaml_lines(doc, "", out)
    else:
        out.append(_yaml_block_scalar(doc))
    return "\n".join(out) + "\n"


def print_resources(
    cli: Cli,
    found: list[dict[str, Any]],
    fmt: str,
    as_list: bool,
    revision: int | None,
    all_namespaces: bool,
    kind: str | None,
) -> None:
    if fmt in ("ps", "wide"):
        kinds = [kind] if kind else list(dict.fromkeys(r.get("kind", "") for r in found))
        parts = []
        for k in kinds:
            mine = [r for r in found if r.get("kind") == k] if len(kinds) > 1 else found
            parts.append(tables.table(k, mine, wide=fmt == "wide", all_namespaces=all_namespaces))
        cli.out("\n".join(parts))
        return
    if not as_list and len(found) == 1:
        cli.out(dump(found[0], fmt))
        return
    kinds = {r.get("kind") for r in found} or {kind}
    list_kind = f"{kinds.pop()}List" if len(kinds) == 1 and None not in kinds else "List"
    cli.out(dump(list_doc(list_kind, found, revision), fmt))
