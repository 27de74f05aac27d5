"""`w` ("why?"): which policies and profiles applied to a flow, the rule that decided, and
for a deny the rule that would allow it. Computed from the policy in etcd with
`calico.policy.evaluate`, before (or without) any traffic being sent.

Opened from a matrix cell, a flow row, or any pair of pods (the matrix by pod).
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from calico.policy import Flow, PolicySet, Verdict, evaluate
from calico.resources import WorkloadEndpoint
from console.model import ClusterState


def policy_set_of(state: ClusterState) -> PolicySet:
    """The policy set of a console ClusterState (profiles, policies, endpoints)."""
    return PolicySet.from_resources(state.resources.values())


def flow_verdict(
    policy_set: PolicySet,
    src: str,
    dst: str,
    protocol: str = "TCP",
    dst_port: int | None = None,
) -> Verdict:
    """Evaluate a flow given by addresses: an address that belongs to a workload endpoint
    becomes that endpoint (its policies apply), any other stays a bare address."""
    src_end: WorkloadEndpoint | str = policy_set.endpoint_for_ip(src) or src
    dst_end: WorkloadEndpoint | str = policy_set.endpoint_for_ip(dst) or dst
    return evaluate(
        policy_set,
        Flow(
            src_end,
            dst_end,
            (protocol or "TCP").upper(),
            dst_port=dst_port,
            src_ip=src if isinstance(src_end, WorkloadEndpoint) else None,
            dst_ip=dst if isinstance(dst_end, WorkloadEndpoint) else None,
        ),
    )


FROM_DATASTORE = "from the policy in the datastore; no traffic was sent to decide this"
FROM_STAGED = "from the policy as it would be after the staged changes; nothing was written"


def explanation(
    verdict: Verdict | None,
    sections: list[tuple[str, str]] = (),
    no_verdict: str = "",
    source: str = FROM_DATASTORE,
) -> Text:
    """The explanation as coloured text: the verdict, each direction with its ordered
    policies/profiles and the rules looked at, the hint for a deny, then extra sections
    (observed result, the agent's rule, a command to reproduce). `no_verdict`: why there
    is no verdict, when it is not the usual (the destination is no endpoint)."""
    out = Text()
    if verdict is None:
        out.append("No policy verdict for this pair.\n", style="bold yellow")
        out.append(
            (no_verdict + "\n")
            if no_verdict
            else "The destination is not a workload endpoint the datastore knows (no address "
            "on a calico network), so no Calico policy applies to it.\n",
            style="italic",
        )
    else:
        lines = verdict.explain()
        head, rest = lines[0], lines[1:]
        word, _, flow = head.partition(": ")
        out.append(
            f" {word} ",
            style="bold white on dark_green" if verdict.allowed else "bold white on red",
        )
        out.append(f"  {flow}\n\n")
        for line in rest:
            stripped = line.strip()
            if not line.startswith(" "):  # a direction's verdict
                style = "bold red" if "DENIED" in line else "bold green"
                out.append(("✘ " if "DENIED" in line else "✔ ") + line + "\n", style=style)
                continue
            out.append("  │ ", style="dim")
            if stripped.startswith("policies:"):
                out.append(stripped + "\n", style="cyan")
            elif stripped.startswith("hint:"):
                out.append("would allow: ", style="bold yellow")
                out.append(stripped.removeprefix("hint:").strip() + "\n", style="yellow")
            elif stripped.endswith(": matched"):
                out.append(stripped + "\n", style="green")
            else:
                out.append(stripped + "\n", style="dim")
        out.append(f"\n{source}\n", style="italic dim")
    out.append_text(sections_text(sections))
    return out


def sections_text(sections: list[tuple[str, str]]) -> Text:
    out = Text()
    for title, body in sections:
        if body:
            out.append(f"\n{title}\n", style="bold underline")
            out.append(body + "\n")
    return out


class WhyScreen(ModalScreen[None]):
    """A panel over the current screen; escape closes it."""

    CSS_PATH = Path(__file__).with_suffix(".tcss")
    BINDINGS = [Binding("escape,q,w", "close", "close")]

    def __init__(
        self,
        title: str,
        verdict: Verdict | None,
        sections: list[tuple[str, str]] | None = None,
        no_verdict: str = "",
        after: tuple[str, Verdict | None] | None = None,
    ):
        """`after`: what-if, (heading, verdict after the staged changes), explained after
        the verdict of now, so both verdicts read side by side."""
        super().__init__()
        self.title_text = title
        self.verdict = verdict
        self.sections = list(sections or [])
        self.no_verdict = no_verdict
        self.after = after

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="why-box"):
            yield Static(Text.assemble(("why? ", "bold"), self.title_text), id="why-title")
            if self.after is None:
                body = explanation(self.verdict, self.sections, self.no_verdict)
                yield Static(body, id="why-body")
            else:  # what-if: now, then after the staged changes, then the rest
                heading, verdict = self.after
                yield Static(Text("Now", style="bold underline"), classes="why-heading")
                yield Static(explanation(self.verdict, [], self.no_verdict), id="why-body")
                yield Static(Text(heading, style="bold magenta underline"), classes="why-heading")
                yield Static(explanation(verdict, [], self.no_verdict, FROM_STAGED), id="why-after")
                yield Static(sections_text(self.sections), id="why-sections")
            yield Static("escape: close", id="why-keys")

    def action_close(self) -> None:
        self.dismiss(None)
