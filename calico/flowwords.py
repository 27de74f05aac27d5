"""The words of a flow verdict, shared by the agent's flow log and the console's filters
(hubble's `forwarded`/`dropped` are accepted as well as allow/deny)."""

ALLOWED = "allowed"
DENIED = "denied"
VERDICT_WORDS = {
    "allowed": ALLOWED,
    "allow": ALLOWED,
    "forwarded": ALLOWED,
    "accepted": ALLOWED,
    "denied": DENIED,
    "deny": DENIED,
    "dropped": DENIED,
    "drop": DENIED,
}
