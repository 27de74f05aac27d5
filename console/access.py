"""The read-only decision, in one place: which console actions change the cluster, and what a
key that would do one says instead.

A read-only console (`--read-only`, and the web console unless served with
`--allow-changes`, since anyone holding its address drives it) must not offer a change at
all: the binding is absent from the footer, help and the command palette. The key itself is
not dead, though: a person who knows `e` from the terminal presses it and is told why nothing
happens. `changing()` makes that pair of bindings; `ConsoleScreen.check_action` asks
`action_allowed()` which one of the pair is live.

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
    "delete": "deleting a resource",
    "launch": "launching a pod",
    "run_step": "running a tutorial step (it writes network files and starts pods)",
    "run_all": "running the tutorial (it writes network files and starts pods)",
}
REFUSE_ACTION = "refuse_change"  # the hidden twin of a changing binding, live when read-only


def action_allowed(action: str, read_only: bool) -> bool:
    """Whether `action` is live: a changing action only when changes are allowed, its
    refusal only when they are not, everything else always."""
    if action == REFUSE_ACTION:
        return read_only
    if action in CHANGING_ACTIONS:
        return not read_only
    return True


def refusal(action: str, *, web: bool) -> str:
    """The notice a read-only console gives for a changing key."""
    doing = CHANGING_ACTIONS.get(action, action)
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
