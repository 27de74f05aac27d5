"""`calicoctl label | patch`, and `--dry-run` for them and for `apply`: what-if.

    calicoctl label workloadendpoint NAME team=red [--overwrite]
    calicoctl label wep NAME team --remove
    calicoctl label profile network2 network1=          # spec.labelsToApply (see below)
    calicoctl patch profile network2 -p '{"spec": {"ingress": [{"action": "Allow"}]}}'
    calicoctl apply --dry-run -f policy.yaml             # nothing written

`label` is Calico's command (`KEY=VALUE [--overwrite]` or `KEY --remove`); on a Profile it
edits `spec.labelsToApply`, the labels the profile's endpoints inherit, because those are
the profile labels selectors see (calico/whatif.py says why). `patch` takes a JSON merge
patch (RFC 7386), Calico's `--type merge`. Both write with a compare-and-swap on the
revision they read, in one transaction (calico/whatif_store.py): a concurrent change is a
conflict and nothing is written.

With `--dry-run` nothing is written: the change is staged over what etcd holds now and the
endpoint pairs whose verdict would change are printed (TCP/80 unless `--port/--protocol`),
each with the rule that decides it after the change, computed by calico.policy.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from calico.errors import Conflict, DatastoreError, NotFound, Unavailable
from calicoctl.context import Cli, CliError
from calicoctl.tables import render

# calico.whatif pulls in calico.resources and calico.policy: imported where used, as the
# other command modules do, to keep `calicoctl --help` fast.


def _decider(verdict: Any) -> str:
    decision = verdict.decision if verdict is not None else None
    return str(decision) if decision is not None else ""


def print_what_if(cli: Cli, result: Any) -> None:
    """The staged writes, then one row per pair whose verdict would change."""
    staged = result.staged
    what = "; ".join(staged.describe()) or "no resource would change"
    cli.out(f"Dry run, nothing written. Staged: {what}\n")
    flips = result.flips
    where = f"{result.protocol}/{result.port}"
    cli.out(
        f"{len(flips)} of {len(result.pairs)} endpoint pairs would change verdict ({where})"
        + (":\n" if flips else ".\n")
    )
    if flips:
        rows = [["SOURCE", "DESTINATION", "NOW", "AFTER", "DECIDED BY (AFTER)"]]
        for pair in flips:
            src, dst = pair.source.metadata, pair.destination.metadata
            rows.append(
                [
                    f"{src.namespace or 'default'}/{src.name} ({pair.src_ip})",
                    f"{dst.namespace or 'default'}/{dst.name} ({pair.dst_ip})",
                    "allowed" if pair.before.allowed else "denied",
                    "allowed" if pair.after.allowed else "denied",
                    _decider(pair.after),
                ]
            )
        cli.out(render(rows))
    appearing = result.appearing
    if appearing:
        cli.out(f"{len(appearing)} pairs with an endpoint that exists on one side only:\n")
        cli.out("".join(f"  {p.describe()}\n" for p in appearing))


def dry_run(cli: Cli, changes: list[Any]) -> int:
    """Stage `changes` over what etcd holds now and print the flips; writes nothing."""
    from calico.whatif import StageError, what_if
    from calico.whatif_store import read_policy_resources

    try:
        resources = read_policy_resources(cli.datastore())
        result = what_if(resources, changes, port=cli.args.port, protocol=cli.args.protocol)
    except Unavailable as exc:
        raise cli.unavailable(exc) from None
    except StageError as exc:
        raise CliError(f"Failed to stage the change: {exc}") from None
    print_what_if(cli, result)
    return 0


def _commit(cli: Cli, change: Any, verb: str) -> Any:
    """Stage one change over the one resource it touches and write it (CAS)."""
    from calico.resources import kind_class
    from calico.whatif import StageError, stage
    from calico.whatif_store import commit

    ds = cli.datastore()
    cls = kind_class(change.kind)
    try:
        current = ds.get(cls, change.name, change.namespace if cls.NAMESPACED else None)
        staged = stage([current], [change])
        if not staged.writes:
            return None
        commit(ds, staged)
    except Unavailable as exc:
        raise cli.unavailable(exc) from None
    except NotFound:
        ident = _ident(cls.KIND, change.name, change.namespace)
        raise CliError(f"Failed to {verb} resource: [resource does not exist: {ident}]") from None
    except StageError as exc:
        raise CliError(f"Failed to {verb} resource: [{exc}]") from None
    except Conflict as exc:
        raise CliError(f"Failed to {verb} resource: [update conflict: {exc}]") from None
    except DatastoreError as exc:
        raise CliError(f"Failed to {verb} resource: [{exc}]") from None
    return next(iter(staged.writes.values()))


def _ident(kind: str, name: str, ns: str | None) -> str:
    return f"{kind}({ns}/{name})" if ns else f"{kind}({name})"


def _target(cli: Cli) -> tuple[str, str | None]:
    from calico.resources import ValidationError, kind_class

    try:
        cls = kind_class(cli.args.kind)
    except ValidationError as exc:
        raise CliError(f"Failed to execute command: {exc.message}") from None
    return cls.KIND, (cli.args.namespace or "default") if cls.NAMESPACED else None


def cmd_label(cli: Cli) -> int:
    from calico.whatif import LABEL_KINDS, Label, StageError, parse_label_args

    args = cli.args
    kind, ns = _target(cli)
    if kind not in LABEL_KINDS:
        raise CliError(
            f"Failed to execute command: label works on workloadendpoints and profiles, not {kind}"
        )
    if args.remove and args.overwrite:
        raise CliError("Failed to execute command: --overwrite and --remove do not go together")
    try:
        to_set, to_remove = parse_label_args(args.labels, remove=args.remove)
    except StageError as exc:
        raise CliError(f"Failed to execute command: {exc}") from None
    change = Label(kind, args.name, ns, to_set, tuple(to_remove), args.overwrite)
    if args.dry_run:
        return dry_run(cli, [change])
    write = _commit(cli, change, "label")
    words = ", ".join([*(f"{k}={v}" for k, v in to_set.items()), *to_remove])
    if write is None:
        cli.out(f"Labels already as asked ({words}) on {_ident(kind, args.name, ns)}\n")
        return 0
    done = "removed label" if to_remove and not to_set else "set label"
    cli.out(f"Successfully {done} {words} on {write.ident}\n")
    return 0


def cmd_patch(cli: Cli) -> int:
    from calico.whatif import Patch

    args = cli.args
    kind, ns = _target(cli)
    if args.type != "merge":
        raise CliError(
            f"Failed to execute command: patch type {args.type!r} is not supported here; "
            "use --type merge (a JSON merge patch)"
        )
    try:
        patch = json.loads(args.patch)
    except ValueError as exc:
        raise CliError(f"Failed to execute command: the patch is not JSON: {exc}") from None
    if not isinstance(patch, dict):
        raise CliError("Failed to execute command: a merge patch is a JSON object")
    change = Patch(kind, args.name, ns, patch)
    if args.dry_run:
        return dry_run(cli, [change])
    write = _commit(cli, change, "patch")
    if write is None:
        cli.out(f"The patch changes nothing in {_ident(kind, args.name, ns)}\n")
        return 0
    cli.out(f"Successfully patched 1 '{kind}' resource\n")
    return 0


def apply_dry_run(cli: Cli, resources: list[Any]) -> int:
    """`calicoctl apply --dry-run -f FILE`."""
    from calico.whatif import Apply

    return dry_run(cli, [Apply(r) for r in resources])


def what_if_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dry-run", action="store_true",
        help="write nothing: print the endpoint pairs whose verdict would change",
    )  # fmt: skip
    parser.add_argument(
        "--port", type=int, default=80, help="destination port of the pairs (default 80)"
    )
    parser.add_argument("--protocol", default="TCP", help="protocol of the pairs (default TCP)")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "label", parents=[common],
        help="set (KEY=VALUE [--overwrite]) or remove (KEY --remove) labels",
    )  # fmt: skip
    p.add_argument("kind", metavar="KIND", help="workloadendpoint (wep) or profile")
    p.add_argument("name", metavar="NAME")
    p.add_argument("labels", nargs="+", metavar="KEY=VALUE|KEY")
    p.add_argument("--overwrite", action="store_true", help="replace a label's existing value")
    p.add_argument("--remove", action="store_true", help="remove the labels KEY")
    p.add_argument("-n", "--namespace", metavar="NS", help="namespace (default 'default')")
    what_if_options(p)
    p.set_defaults(func=cmd_label)

    p = sub.add_parser("patch", parents=[common], help="change a resource by a JSON merge patch")
    p.add_argument("kind", metavar="KIND")
    p.add_argument("name", metavar="NAME")
    p.add_argument("-p", "--patch", required=True, metavar="JSON", help="the merge patch")
    p.add_argument("-t", "--type", default="merge", help="patch type: merge (the only one)")
    p.add_argument("-n", "--namespace", metavar="NS", help="namespace (default 'default')")
    what_if_options(p)
    p.set_defaults(func=cmd_patch)
