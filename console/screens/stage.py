"""What-if dialogs of the browse screen: apply an edit now or stage it, and edit labels.

A staged change is written by nothing: `:matrix` shows what it would do (now, after,
observed per cell) and its `a` writes it, `x` drops it (console/screens/matrix.py).
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from calico.resources import Resource, WorkloadEndpoint

# What `c` opens in the editor, per view: a valid resource to adapt (no resourceVersion,
# so applying it creates).
NEW_TEMPLATES = {
    "profiles": """apiVersion: projectcalico.org/v3
kind: Profile
metadata:
  name: new-profile
spec:
  ingress:
  - action: Allow
    source:
      selector: has(new-profile)
  egress:
  - action: Allow
  labelsToApply:
    new-profile: ''
""",
    "policies": """apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: new-policy
spec:
  order: 100
  selector: has(network1)
  types:
  - Ingress
  ingress:
  - action: Allow
    protocol: TCP
    source:
      selector: has(network2)
    destination:
      ports:
      - 80
  - action: Pass
""",
}


def labels_of(res: Resource) -> dict[str, str]:
    """The labels `l` edits: an endpoint's own, a profile's labelsToApply (the labels its
    endpoints inherit; see calico/whatif.py)."""
    if isinstance(res, WorkloadEndpoint):
        return {
            k: v for k, v in res.metadata.labels.items() if not k.startswith("projectcalico.org/")
        }
    return dict(res.spec.labels_to_apply)


class ApplyOrStageScreen(ModalScreen[str | None]):
    """`a` apply now, `s` stage for what-if, escape: neither (the edit is dropped)."""

    DEFAULT_CSS = "ApplyOrStageScreen { align: center middle; }"
    BINDINGS = [
        Binding("a", "choose('apply')", "apply now"),
        Binding("s", "choose('stage')", "stage (what-if)"),
        Binding("escape", "choose('')", "cancel"),
    ]

    def __init__(self, ident: str, verb: str = "Apply"):
        super().__init__()
        self.ident = ident
        self.verb = verb
        self.how = (
            "refused if it exists already"
            if verb == "Create"
            else "compare-and-swap on the version it was read at"
        )

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static(
                Text.assemble(
                    (f"{self.verb} {self.ident}?\n\n", "bold"),
                    ("a", "bold"),
                    f"  {self.verb.lower()} it now ({self.how})\n",
                    ("s", "bold"),
                    "  stage it: :matrix shows which cells it would flip, writes nothing\n",
                    ("escape", "bold"),
                    "  drop the edit",
                ),
                id="confirm-question",
            )

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice or None)


class LabelsScreen(ModalScreen[str | None]):
    """One line of label edits: `key=value` sets (overwriting), `-key` removes."""

    DEFAULT_CSS = "LabelsScreen { align: center middle; } LabelsScreen Input { margin-top: 1; }"
    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def __init__(self, ident: str, current: dict[str, str], what: str):
        super().__init__()
        self.ident = ident
        self.current = current
        self.what = what

    def compose(self) -> ComposeResult:
        now = " ".join(f"{k}={v}" for k, v in sorted(self.current.items())) or "none"
        with Vertical(id="confirm-box"):
            yield Static(
                Text.assemble(
                    (f"Labels of {self.ident}", "bold"),
                    f" ({self.what})\nnow: {now}\n",
                    ("key=value", "bold"),
                    " sets, ",
                    ("-key", "bold"),
                    " removes; enter stages the edit (see :matrix), escape cancels",
                ),
                id="confirm-question",
            )
            yield Input(placeholder="team=red -old", id="labels-input")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)
