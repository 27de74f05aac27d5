"""`calicoctl get | create | apply | replace | delete | version`: Calico v3 resources in etcd.

Behaves like Calico's calicoctl: the same table columns, `kind: <Kind>List` for listings,
`Successfully created 1 'Profile' resource(s)` on success. Listings work on the stored
JSON without decoding each object into a typed resource (writes always validate in full).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable
from typing import Any

from calico.errors import AlreadyExists, Conflict, DatastoreError, NotFound, Unavailable
from calicoctl.context import Cli, CliError
from calicoctl.inputs import load_resources, read_source, source_name, validation_message
from calicoctl.output import OUTPUT_FORMATS, print_resources

# Start-up is the floor of every calicoctl command (`get profiles` should feel instant), so
# calico.resources (23 ms to import here), calico.datastore and the etcd client (grpc,
# ~55 ms) are imported inside the functions that need them, and `get` reads through
# cli.reader() (etcd's JSON gateway) with kinds from calico.kinds: it imports neither.


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
    from calico.keys import kind_prefix, resource_key
    from calico.kinds import UnknownKind, kind_info

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
        wanted = load_resources(
            read_source(args.filename), source_name(args.filename), args.namespace
        )
        targets = [(type(r), r.metadata.name, r.metadata.namespace) for r in wanted]
        as_list = len(targets) > 1
    else:
        if not args.kind:
            raise CliError("Failed to execute command: give a KIND (e.g. profiles) or -f FILE")
        try:
            cls = kind_info(args.kind)
        except UnknownKind as exc:
            raise CliError(f"Failed to execute command: {exc.message}") from None
        kind = cls.KIND
        ns = _namespace(cli)
        targets = [(cls, name, ns if cls.NAMESPACED else None) for name in args.names]
        as_list = not targets or len(targets) > 1
    ds = cli.reader()
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
        print_resources(cli, found, fmt, as_list, revision, all_ns, kind)
    return 1 if failed else 0


# action name -> (past tense for messages, the datastore call)
Action = Callable[[Any, Any, argparse.Namespace], str]


def _do_create(ds: Any, res: Any, args: argparse.Namespace) -> str:

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

    try:
        ds.update(res)
    except NotFound:
        if args.skip_not_exists:
            return "skipped"
        raise
    return "done"


def _do_delete(ds: Any, res: Any, args: argparse.Namespace) -> str:

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
    from calico.resources import ValidationError

    if isinstance(exc, AlreadyExists):
        return f"resource already exists: {res.ident}"
    if isinstance(exc, NotFound):
        return f"resource does not exist: {res.ident}"
    if isinstance(exc, Conflict):
        return f"update conflict: {exc}"
    if isinstance(exc, ValidationError):
        return validation_message(exc)
    return str(exc)


def _run_action(cli: Cli, action: str, resources: Iterable[Any]) -> int:
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
        resources = load_resources(
            read_source(args.filename), source_name(args.filename), args.namespace
        )
        if getattr(args, "dry_run", False):  # apply --dry-run: what-if, nothing written
            from calicoctl.whatif_commands import apply_dry_run

            return apply_dry_run(cli, resources)
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
    from importlib.metadata import PackageNotFoundError, version  # 12 ms: not for `get`

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


COMMANDS = ("get", "create", "apply", "replace", "delete", "version")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """The resource commands' parsers, each with `func` set to its command."""
    for command in COMMANDS:
        register_one(sub, common, command)


def register_one(sub: Any, common: argparse.ArgumentParser, command: str) -> None:
    """One command's parser: calicoctl builds only the one it runs (building the others,
    and importing calicoctl.whatif_commands for apply's options, cost `get` ~3 ms)."""
    if command == "get":
        p = sub.add_parser("get", parents=[common], help="show resources")
        p.add_argument("kind", nargs="?", metavar="KIND")
        p.add_argument("names", nargs="*", metavar="NAME")
        p.add_argument("-f", "--filename", metavar="FILE", help="get the resources named in FILE")
        p.add_argument("-o", "--output", default="ps", choices=OUTPUT_FORMATS, help="default ps")
        _namespace_options(p, all_namespaces=True)
        p.set_defaults(func=cmd_get)
    elif command in ("create", "apply", "replace"):
        help_text = {
            "create": "create resources from a file (error if they exist)",
            "apply": "create or update resources from a file",
            "replace": "update existing resources from a file",
        }[command]
        p = sub.add_parser(command, parents=[common], help=help_text)
        p.add_argument(
            "-f", "--filename", required=True, metavar="FILE", help="file, or - for stdin"
        )
        _namespace_options(p)
        if command == "create":
            p.add_argument("--skip-exists", action="store_true", help="skip what exists already")
        if command == "replace":
            p.add_argument("--skip-not-exists", action="store_true", help="skip what is absent")
        if command == "apply":
            from calicoctl.whatif_commands import what_if_options

            what_if_options(p)
        p.set_defaults(func=_cmd_from_file(command), skip_exists=False, skip_not_exists=False)
    elif command == "delete":
        p = sub.add_parser("delete", parents=[common], help="delete resources by name or file")
        p.add_argument("kind", nargs="?", metavar="KIND")
        p.add_argument("names", nargs="*", metavar="NAME")
        p.add_argument("-f", "--filename", metavar="FILE", help="delete the resources in FILE")
        p.add_argument("--skip-not-exists", action="store_true", help="skip what is absent")
        _namespace_options(p)
        p.set_defaults(func=cmd_delete)
    elif command == "version":
        p = sub.add_parser("version", parents=[common], help="client and cluster versions")
        p.set_defaults(func=cmd_version)
    else:
        raise ValueError(f"not a resource command: {command}")
