"""The read-only decision, in one place: which console actions change the cluster, and what a
key that would do one says instead.

A read-only console (`--read-only`, and the web console unless served with
`--allow-changes`, since anyone holding its address drives it) must not offer a change at
all: the binding is absent from the footer, help and the command palette. The key itself is
not dead, though: a person who knows `e` from the terminal presses it and is told why nothing
happens. `changing()` makes that pair of bindings; `ConsoleScreen.check_action` asks
`action_allowed()` which one of the pair is live.

One change is also off in a browser even with `--allow-changes`: editing, since `$EDITOR`
runs where the console process runs (the server) and would block it there.

What counts as a change: anything that leaves the cluster different afterwards (a resource
edited or deleted, a pod launched, the tutorial's network files and pods). Probes are not:
a probe pod is removed when its probe ends, and `:matrix` in a read-only browser is exactly
what a class is shown.
"""

from __future__ import annotations

from textual.binding import Binding

# action name -> what it does, as the refusal names it
CHANGING_ACTIONS: dict[str, str] = {
    "edit": "editing a resource",
    "new": "creating a resource",
    "labels": "editing labels",
    "apply_staged": "applying the staged changes",
    "shell": "opening a shell in a pod",
    "delete": "deleting a resource",
    "launch": "launching a pod",
    "run_step": "running a tutorial step (it writes network files and starts pods)",
    "run_all": "running the tutorial (it writes network files and starts pods)",
}
REFUSE_ACTION = "refuse_change"  # the hidden twin of a changing binding, live when refused
# actions that need the console's own terminal: in a browser they would run on the server
TERMINAL_ONLY: dict[str, str] = {
    "edit": "$EDITOR would open on the server running this console, not in this browser; "
    "use calicoctl apply, or the console in a terminal",
    "new": "$EDITOR would open on the server running this console, not in this browser; "
    "use calicoctl create, or the console in a terminal",
    "shell": "the shell would run in the server's terminal, not in this browser; "
    "use rkt enter on the node, or the console in a terminal",
}


def runnable(action: str, *, read_only: bool, web: bool) -> bool:
    """Whether a changing action can run here (anything else always can)."""
    if action not in CHANGING_ACTIONS:
        return True
    return not read_only and not (web and action in TERMINAL_ONLY)


def action_allowed(
    action: str, parameters: tuple[object, ...] = (), *, read_only: bool, web: bool = False
) -> bool:
    """Whether a binding's action is live: a changing action when it can run here, its
    refusal twin (parameters: the action it stands for) exactly when that one cannot."""
    if action == REFUSE_ACTION:
        return not runnable(str(parameters[0]) if parameters else "", read_only=read_only, web=web)
    return runnable(action, read_only=read_only, web=web)


def refusal(action: str, *, read_only: bool, web: bool) -> str:
    """The notice a changing key gives where it cannot run."""
    doing = CHANGING_ACTIONS.get(action, action)
    if not read_only and web and action in TERMINAL_ONLY:
        return f"{doing} is off in a browser: {TERMINAL_ONLY[action]}"
    if web:
        why = (
            "the web console is read-only (anyone with its address drives it); "
            "serve it with --allow-changes to lift this"
        )
    else:
        why = "this console was started with --read-only"
    return f"read-only: {doing} is off: {why}"


def changing(binding: Binding) -> list[Binding]:
    """`binding` (a changing action) and its hidden twin on the same keys, which answers
    with `refusal()` when the console is read-only. Textual tries the bindings of a key in
    order and skips one whose `check_action` is False, so exactly one of the two runs."""
    if binding.action not in CHANGING_ACTIONS:
        raise ValueError(f"{binding.action!r} is not listed in CHANGING_ACTIONS")
    twin = Binding(binding.key, f"{REFUSE_ACTION}('{binding.action}')", show=False)
    return [binding, twin]
