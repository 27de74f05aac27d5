"""`?`: the keys of the current view."""

from __future__ import annotations

from console.screens.text_view import TextScreen

GLOBAL_KEYS = [
    (":", "switch view (nodes, networks, profiles, pools, pods, endpoints, policies, ...)"),
    ("/", "filter rows (regex; a leading ! negates); escape clears"),
    ("d", "describe the selected row"),
    ("y", "show the selected resource as YAML"),
    ("e", "edit the selected resource in $EDITOR, validate, apply"),
    ("ctrl+d", "delete the selected resource (asks first)"),
    ("n", "launch a test pod (node, networks, IP=, image, command)"),
    ("p", "probe: from the selected pod, or a new pod on a network, to address:port"),
    ("ctrl+p", "command palette: every action"),
    ("ctrl+s", "save a screenshot (SVG)"),
    ("?", "this help"),
    ("q", "quit"),
]


def help_screen(view_title: str, view_keys: list[tuple[str, str]], read_only: bool) -> TextScreen:
    lines = [f"Keys in {view_title}", ""]
    for key, what in [*view_keys, *GLOBAL_KEYS]:
        if read_only and key in ("e", "ctrl+d", "n"):
            continue
        lines.append(f"  {key:<8} {what}")
    if read_only:
        lines += ["", "read-only: actions that change the cluster are hidden"]
    return TextScreen("Help", "\n".join(lines))
