"""Reading resources from a file or stdin: YAML (several documents), JSON, or a List."""

from __future__ import annotations

import json
import sys
from typing import Any

from calicoctl.context import CliError

# Start-up is the floor of every calicoctl command (`get profiles` should feel instant), so
# calico.resources (23 ms to import here), calico.keys (which needs it), calico.datastore and
# the etcd client (grpc, ~250 ms) are imported inside the functions that need them.


def read_source(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise CliError(f"Failed to execute command: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CliError(f"Failed to execute command: {path} is not UTF-8 text") from None


def _parse_documents(text: str, source: str) -> list[Any]:
    """YAML (one or more documents) or JSON -> the decoded documents."""
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):
        try:
            data = json.loads(text)
        except ValueError:
            pass  # maybe YAML flow style after all; let the YAML parser report
        else:
            return data if isinstance(data, list) else [data]
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return [d for d in yaml.load_all(text, Loader=loader) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise CliError(
            f"Failed to execute command: {source} is not valid YAML/JSON{where}: {problem}"
        ) from None


def _document_name(item: Any) -> str:
    if not isinstance(item, dict):
        return ""
    meta = item.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    kind = item.get("kind") or "?"
    return f"{kind} {name}" if name else str(kind)


def load_resources(text: str, source: str, namespace: str | None) -> list[Any]:
    """Every resource in a file: multi-document YAML, JSON, or a `kind: List`/`<Kind>List`.

    A namespaced resource without a namespace takes `--namespace`; one with a different
    namespace is an error, as in calicoctl.
    """
    from calico.resources import ValidationError, kind_class, load

    docs = _parse_documents(text, source)
    out = []
    for i, doc in enumerate(docs, start=1):
        is_list = (
            isinstance(doc, dict)
            and str(doc.get("kind", "")).endswith("List")
            and isinstance(doc.get("items", []), list)
        )
        for item in (doc.get("items") or []) if is_list else [doc]:
            where = f"{source}, document {i}" + (
                f": {_document_name(item)}" if _document_name(item) else ""
            )
            if namespace and isinstance(item, dict) and isinstance(item.get("metadata"), dict):
                try:
                    namespaced = kind_class(item.get("kind")).NAMESPACED
                except ValidationError:
                    namespaced = False
                meta = item["metadata"]
                if namespaced and not meta.get("namespace"):
                    meta["namespace"] = namespace
                elif namespaced and meta["namespace"] != namespace:
                    raise CliError(
                        f"Failed to execute command: namespace {meta['namespace']!r} does not "
                        f"match --namespace {namespace!r} [{where}]"
                    )
            try:
                out.append(load(item))
            except ValidationError as exc:
                raise CliError(
                    f"Failed to execute command: {validation_message(exc)} [{where}]"
                ) from None
    if not out:
        raise CliError(f"Failed to execute command: no resources specified in {source}")
    return out


def validation_message(exc: Any) -> str:
    if exc.path and exc.path != "kind":  # "unknown resource kind ..." says it already
        return f"error with field {exc.path}: {exc.message}"
    return exc.message


def source_name(path: str) -> str:
    return "stdin" if path == "-" else path
