"""calicoctl: get, create, apply, replace and delete Calico v3 resources in etcd.

    calicoctl get profiles
    calicoctl get wep -A -o wide
    calicoctl get profile network1 -o yaml > p.yaml
    calicoctl apply -f p.yaml
    calicoctl create -f pools.yaml --skip-exists
    calicoctl delete profile network1

Behaves like Calico's calicoctl: the same table columns, `kind: <Kind>List` for listings,
`Successfully created 1 'Profile' resource(s)` on success. Every failure is one line on
stderr and exit status 1; `--debug` adds the traceback of an unexpected error.

Start-up is kept short: the etcd client (pyetcd, grpc) is imported only by commands that
talk to etcd, and listings work on the stored JSON without decoding each object into a
typed resource (writes always validate in full).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterable
from typing import Any

OUTPUT_FORMATS = ("ps", "wide", "yaml", "json")
API_VERSION = "projectcalico.org/v3"


class CliError(Exception):
    """A failure to report as one line on stderr (exit status 1)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = " ".join(message.split("\n")).strip()


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line and exit status 1 like every error."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise CliError(f"{self.prog}: {message} (see '{self.prog} --help')")


# ---------------------------------------------------------------- shared context


class Cli:
    """What a command gets: its parsed arguments, a lazily connected datastore, output.

    Subcommand modules (e.g. `console.calicoctl_ipam`) use the same object: `cli.args`,
    `cli.datastore()`, `cli.out(text)`, `cli.err(line)`; raise `CliError` to fail.
    """

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self._datastore: Any = None
        self._endpoints: str | None = None

    def endpoints(self) -> str:
        if self._endpoints is None:
            from calico.config import ConfigError, resolve_endpoints

            try:
                self._endpoints = resolve_endpoints(
                    getattr(self.args, "etcd_endpoints", None), getattr(self.args, "config", None)
                )
            except ConfigError as exc:
                raise CliError(f"Failed to load config: {exc}") from None
        return self._endpoints

    def datastore(self) -> Any:
        """The etcd datastore (connects on first use; imports the etcd client then)."""
        if self._datastore is None:
            from calico.config import ConfigError
            from calico.datastore import Datastore

            try:
                self._datastore = Datastore.connect(self.endpoints())
            except ConfigError as exc:
                raise CliError(f"Failed to load config: {exc}") from None
        return self._datastore

    def close(self) -> None:
        if self._datastore is not None:
            try:
                self._datastore.close()
            except Exception:  # closing a dead channel must not hide the real outcome
                pass

    def unavailable(self, exc: Exception) -> CliError:
        detail = str(exc).removeprefix("etcd unavailable:").strip() or type(exc).__name__
        grpc_details = re.search(r'details = "([^"]*)"', detail)  # a gRPC error's own words
        if grpc_details:
            detail = grpc_details.group(1)
        return CliError(f"etcd unavailable at {self.endpoints()}: {detail}")

    @staticmethod
    def out(text: str) -> None:
        sys.stdout.write(text)

    @staticmethod
    def err(line: str) -> None:
        sys.stderr.write(" ".join(line.split("\n")).rstrip() + "\n")


# ---------------------------------------------------------------- reading input files


def _read_source(path: str) -> str:
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


def _describe(item: Any) -> str:
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
            where = f"{source}, document {i}" + (f": {_describe(item)}" if _describe(item) else "")
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
                raise CliError(f"Failed to execute command: {_validation(exc)} [{where}]") from None
    if not out:
        raise CliError(f"Failed to execute command: no resources specified in {source}")
    return out


def _validation(exc: Any) -> str:
    if exc.path and exc.path != "kind":  # "unknown resource kind ..." says it already
        return f"error with field {exc.path}: {exc.message}"
    return exc.message


# ---------------------------------------------------------------- writing output


def _list_doc(kind: str, items: list[dict[str, Any]], revision: int | None) -> dict[str, Any]:
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


def _print_resources(
    cli: Cli,
    found: list[dict[str, Any]],
    fmt: str,
    as_list: bool,
    revision: int | None,
    all_namespaces: bool,
    kind: str | None,
) -> None:
    if fmt in ("ps", "wide"):
        from console import tables

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
    cli.out(dump(_list_doc(list_kind, found, revision), fmt))


# ---------------------------------------------------------------- commands


def _raw(kv: Any) -> dict[str, Any]:
    """A stored resource as its wire dict, resourceVersion filled from the key's revision."""
    try:
        data = json.loads(kv.value.decode())
    except ValueError:
        raise CliError(f"Failed to get resources: {kv.key} does not hold JSON") from None
    if not isinstance(data, dict):
        raise CliError(f"Failed to get resources: {kv.key} does not hold a resource")
    meta = data.get("metadata")
    if not isinstance(meta, dict):
        meta = data["metadata"] = {}
    meta["resourceVersion"] = str(kv.mod_revision)
    return data


def list_prefix(ds: Any, prefix: str) -> tuple[list[Any], int]:
    """Every key under a prefix at one revision (the datastore reads it in pages)."""
    return ds.kv_list(prefix)


def _namespace(cli: Cli) -> str:
    return cli.args.namespace or "default"


def cmd_get(cli: Cli) -> int:
    from calico.errors import Unavailable
    from calico.keys import kind_prefix, resource_key
    from calico.resources import ValidationError, kind_class

    args = cli.args
    fmt = args.output
    failed = False
    found: list[dict[str, Any]] = []
    revision = None
    kind = None
    as_list = False
    if args.filename:
        if args.kind:
            raise CliError("Failed to execute command: give either KIND [NAME] or -f FILE")
        wanted = load_resources(_read_source(args.filename), _src(args.filename), args.namespace)
        targets = [(type(r), r.metadata.name, r.metadata.namespace) for r in wanted]
        as_list = len(targets) > 1
    else:
        if not args.kind:
            raise CliError("Failed to execute command: give a KIND (e.g. profiles) or -f FILE")
        try:
            cls = kind_class(args.kind)
        except ValidationError as exc:
            raise CliError(f"Failed to execute command: {exc.message}") from None
        kind = cls.KIND
        ns = _namespace(cli)
        targets = [(cls, name, ns if cls.NAMESPACED else None) for name in args.names]
        as_list = not targets or len(targets) > 1
    ds = cli.datastore()
    try:
        if targets:
            for cls, name, ns in targets:
                kv = ds.kv_get(resource_key(cls, name, ns))
                if kv is None:
                    ident = f"{cls.KIND}({ns}/{name})" if cls.NAMESPACED else f"{cls.KIND}({name})"
                    cli.err(
                        f"Failed to get '{cls.KIND}' resource: [resource does not exist: {ident}]"
                    )
                    failed = True
                else:
                    found.append(_raw(kv))
        else:
            ns = None if args.all_namespaces else _namespace(cli)
            kvs, revision = list_prefix(ds, kind_prefix(cls, ns))
            found = [_raw(kv) for kv in kvs]
    except Unavailable as exc:
        raise cli.unavailable(exc) from None
    all_ns = args.all_namespaces
    if found or not targets:
        _print_resources(cli, found, fmt, as_list, revision, all_ns, kind)
    return 1 if failed else 0


def _src(path: str) -> str:
    return "stdin" if path == "-" else path


# action name -> (past tense for messages, the datastore call)
Action = Callable[[Any, Any, argparse.Namespace], str]


def _do_create(ds: Any, res: Any, args: argparse.Namespace) -> str:
    from calico.errors import AlreadyExists

    res.metadata.resource_version = None  # a create has no previous version
    try:
        ds.create(res)
    except AlreadyExists:
        if args.skip_exists:
            return "skipped"
        raise
    return "done"


def _do_apply(ds: Any, res: Any, args: argparse.Namespace) -> str:
    """Create, or replace what exists. A resourceVersion in the input is honoured (as
    calicoctl does), so applying a stale copy fails instead of undoing someone's change."""
    import copy

    from calico.errors import AlreadyExists, NotFound

    version = res.metadata.resource_version
    for _ in range(3):
        fresh = copy.deepcopy(res)  # create() fills uid/creationTimestamp in place
        fresh.metadata.resource_version = None
        try:
            ds.create(fresh)
            return "done"
        except AlreadyExists:
            pass
        update = copy.deepcopy(res)
        update.metadata.resource_version = version
        try:
            ds.update(update)
            return "done"
        except NotFound:
            if version:
                raise
            continue  # deleted between our create and update: create again
    raise CliError(f"Failed to apply '{res.KIND}' resource: [{res.ident} kept changing]")


def _do_replace(ds: Any, res: Any, args: argparse.Namespace) -> str:
    from calico.errors import NotFound

    try:
        ds.update(res)
    except NotFound:
        if args.skip_not_exists:
            return "skipped"
        raise
    return "done"


def _do_delete(ds: Any, res: Any, args: argparse.Namespace) -> str:
    from calico.errors import NotFound

    try:
        ds.delete(
            type(res), res.metadata.name, res.metadata.namespace, res.metadata.resource_version
        )
    except NotFound:
        if args.skip_not_exists:
            return "skipped"
        raise
    return "done"


ACTIONS: dict[str, tuple[str, Action]] = {
    "create": ("created", _do_create),
    "apply": ("applied", _do_apply),
    "replace": ("replaced", _do_replace),
    "delete": ("deleted", _do_delete),
}


def _reason(exc: Exception, res: Any) -> str:
    """Why one resource failed, in calicoctl's words."""
    from calico.errors import AlreadyExists, Conflict, NotFound
    from calico.resources import ValidationError

    if isinstance(exc, AlreadyExists):
        return f"resource already exists: {res.ident}"
    if isinstance(exc, NotFound):
        return f"resource does not exist: {res.ident}"
    if isinstance(exc, Conflict):
        return f"update conflict: {exc}"
    if isinstance(exc, ValidationError):
        return _validation(exc)
    return str(exc)


def _run_action(cli: Cli, action: str, resources: Iterable[Any]) -> int:
    from calico.errors import DatastoreError, Unavailable
    from calico.resources import ValidationError

    past, do = ACTIONS[action]
    resources = list(resources)
    ds = cli.datastore()
    handled: list[Any] = []
    failed = 0
    errors: list[str] = []
    for res in resources:
        try:
            do(ds, res, cli.args)
            handled.append(res)
        except Unavailable as exc:
            if handled:
                _success(cli, past, handled)
            raise cli.unavailable(exc) from None
        except (DatastoreError, ValidationError) as exc:
            failed += 1
            errors.append(f"Failed to {action} '{res.KIND}' resource: [{_reason(exc, res)}]")
    if handled:
        _success(cli, past, handled)
    for line in errors:
        cli.err(line)
    return 1 if failed else 0


def _success(cli: Cli, past: str, handled: list[Any]) -> None:
    kinds = {r.KIND for r in handled}
    what = f"'{kinds.pop()}' resource(s)" if len(kinds) == 1 else "resource(s)"
    cli.out(f"Successfully {past} {len(handled)} {what}\n")


def _cmd_from_file(action: str) -> Callable[[Cli], int]:
    def run(cli: Cli) -> int:
        args = cli.args
        resources = load_resources(_read_source(args.filename), _src(args.filename), args.namespace)
        return _run_action(cli, action, resources)

    return run


def cmd_delete(cli: Cli) -> int:
    from calico.resources import ValidationError, kind_class

    args = cli.args
    if args.filename:
        if args.kind:
            raise CliError("Failed to execute command: give either KIND NAME or -f FILE")
        return _cmd_from_file("delete")(cli)
    if not args.kind or not args.names:
        raise CliError(
            "Failed to execute command: give KIND NAME (e.g. profile network1) or -f FILE"
        )
    try:
        cls = kind_class(args.kind)
    except ValidationError as exc:
        raise CliError(f"Failed to execute command: {exc.message}") from None
    ns = _namespace(cli) if cls.NAMESPACED else None
    # Only the identity is needed to delete: skip building and validating a whole object.
    targets = []
    for name in args.names:
        res = cls()
        res.metadata.name = name
        res.metadata.namespace = ns
        targets.append(res)
    return _run_action(cli, "delete", targets)


def cmd_version(cli: Cli) -> int:
    from importlib.metadata import PackageNotFoundError, version

    from calico.errors import DatastoreError

    try:
        client = version("calico-rkt")
    except PackageNotFoundError:
        client = "unknown"
    lines = [f"Client Version:    v{client}"]
    try:
        ds = cli.datastore()
        status = ds._call(ds.client.status)
        cluster = f"etcd v{status.version}"
    except (DatastoreError, CliError) as exc:
        msg = exc.message if isinstance(exc, CliError) else cli.unavailable(exc).message
        cluster = f"unknown ({msg})"
    lines += [f"Cluster Version:   {cluster}", "Cluster Type:      etcdv3"]
    cli.out("\n".join(lines) + "\n")
    return 0


# ---------------------------------------------------------------- argument parsing


def _common_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """Options accepted before and after the command; `suppress` keeps a subcommand from
    resetting what was given before it."""
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "-c", "--config", default=default, metavar="FILE",
        help="calicoctl config file (default /etc/calico/calicoctl.cfg, or $CALICOCTL_CONFIG)",
    )  # fmt: skip
    parser.add_argument(
        "--etcd-endpoints", default=default, metavar="URLS",
        help="etcd endpoints, e.g. http://127.0.0.1:2379 (default $ETCD_ENDPOINTS, then the config file)",
    )  # fmt: skip
    parser.add_argument(
        "--debug", action="store_true", default=default,
        help="show the traceback of an unexpected error",
    )  # fmt: skip


def _namespace_options(parser: argparse.ArgumentParser, all_namespaces: bool = False) -> None:
    parser.add_argument(
        "-n", "--namespace", metavar="NS",
        help="namespace of namespaced kinds (default 'default')",
    )  # fmt: skip
    if all_namespaces:
        parser.add_argument(
            "-A", "--all-namespaces", action="store_true",
            help="every namespace (adds a NAMESPACE column)",
        )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="calicoctl",
        description="Manage Calico v3 resources in etcd.",
        epilog="Kinds: profile, ippool, node, workloadendpoint (wep), networkpolicy, "
        "globalnetworkpolicy (gnp); any case, singular or plural.",
    )
    _common_options(parser, suppress=False)
    common = _Parser(add_help=False)
    _common_options(common, suppress=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("get", parents=[common], help="show resources")
    p.add_argument("kind", nargs="?", metavar="KIND")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument("-f", "--filename", metavar="FILE", help="get the resources named in FILE")
    p.add_argument("-o", "--output", default="ps", choices=OUTPUT_FORMATS, help="default ps")
    _namespace_options(p, all_namespaces=True)
    p.set_defaults(func=cmd_get)

    for action, help_text in (
        ("create", "create resources from a file (error if they exist)"),
        ("apply", "create or update resources from a file"),
        ("replace", "update existing resources from a file"),
    ):
        p = sub.add_parser(action, parents=[common], help=help_text)
        p.add_argument(
            "-f", "--filename", required=True, metavar="FILE", help="file, or - for stdin"
        )
        _namespace_options(p)
        if action == "create":
            p.add_argument("--skip-exists", action="store_true", help="skip what exists already")
        if action == "replace":
            p.add_argument("--skip-not-exists", action="store_true", help="skip what is absent")
        p.set_defaults(func=_cmd_from_file(action), skip_exists=False, skip_not_exists=False)

    p = sub.add_parser("delete", parents=[common], help="delete resources by name or file")
    p.add_argument("kind", nargs="?", metavar="KIND")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument("-f", "--filename", metavar="FILE", help="delete the resources in FILE")
    p.add_argument("--skip-not-exists", action="store_true", help="skip what is absent")
    _namespace_options(p)
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("version", parents=[common], help="client and cluster versions")
    p.set_defaults(func=cmd_version)

    _register_ipam(sub, common)
    return parser


# ---------------------------------------------------------------- calicoctl ipam (extension)
#
# `calicoctl ipam show|check|release` live in their own module, console/calicoctl_ipam.py,
# written separately. Its contract with this file:
#
#     def register(subparsers, common) -> None:
#         ipam = subparsers.add_parser("ipam", parents=[common], help=...)
#         ipam_sub = ipam.add_subparsers(dest="ipam_command", metavar="COMMAND")
#         show = ipam_sub.add_parser("show", parents=[common], ...)
#         show.set_defaults(func=cmd_show)      # cmd_show(cli: Cli) -> int
#
# A command gets the `Cli` above (args, lazily connected datastore(), out(), err()), raises
# `CliError` for a one-line failure; `Unavailable` from the datastore is reported by main().
# Keep that module's top-level imports light: it is imported whenever calicoctl starts.


def _register_ipam(sub: Any, common: argparse.ArgumentParser) -> None:
    import importlib

    try:
        calicoctl_ipam = importlib.import_module("console.calicoctl_ipam")
    except ModuleNotFoundError as exc:
        if exc.name != "console.calicoctl_ipam":
            raise
        p = sub.add_parser("ipam", parents=[common], help="IP address management (not built yet)")
        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.set_defaults(func=_ipam_missing)
        return
    calicoctl_ipam.register(sub, common)


def _ipam_missing(cli: Cli) -> int:
    raise CliError("calicoctl ipam is not available in this installation")


# ---------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> int:
    cli: Cli | None = None
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        debug = bool(getattr(args, "debug", False))
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return 1
        cli = Cli(args)
        return args.func(cli)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    except CliError as exc:
        Cli.err(exc.message)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `calicoctl get ... | head`
        try:
            sys.stdout = open("/dev/null", "w")  # noqa: SIM115 - silence the final flush
        except OSError:
            pass
        return 1
    except Exception as exc:
        from calico.errors import Unavailable

        if isinstance(exc, Unavailable) and cli is not None:
            Cli.err(cli.unavailable(exc).message)
            return 1
        if debug:
            import traceback

            traceback.print_exc()
        Cli.err(f"calicoctl: unexpected error: {type(exc).__name__}: {exc} (rerun with --debug)")
        return 1
    finally:
        if cli is not None:
            cli.close()


if __name__ == "__main__":
    sys.exit(main())
