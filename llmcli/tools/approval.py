"""The approval policy: for each tool, allow, ask or deny.

Built-ins default to `allow`; tools people bring (user commands, MCP) default to `ask`, because
their effects are unknown to us. `ask` with no terminal to ask on is a refusal the model reads
(fail closed), and the caller is told which flag would allow it. "always" at the prompt is
remembered for the rest of the session.
"""

from __future__ import annotations

from typing import Dict, Iterable, Mapping, Optional

from ..errors import ConfigError

DECISIONS = ("allow", "ask", "deny")
DEFAULT_BY_ORIGIN = {"builtin": "allow", "user": "ask", "mcp": "ask"}


class ApprovalPolicy:
    """Decides per tool name. Precedence: --deny-tool > --allow-tool > --yes > config > origin default."""

    def __init__(self, rules: Optional[Mapping[str, str]] = None, allow: Iterable[str] = (),
                 deny: Iterable[str] = (), yes: bool = False, ask_all: bool = False):
        self.rules: Dict[str, str] = {}
        for name, decision in (rules or {}).items():
            decision = str(decision).strip().lower()
            if decision not in DECISIONS:
                raise ConfigError(f"tools.approval.{name}: expected allow, ask or deny, got {decision!r}")
            self.rules[str(name)] = decision
        self.allow = set(allow)
        self.deny = set(deny)
        self.yes = yes
        self.ask_all = ask_all  # --confirm-tools: ask for everything not explicitly allowed
        self.remembered: set = set()

    def _match(self, names, name):
        from fnmatch import fnmatchcase

        return any(fnmatchcase(name, pattern) for pattern in names)

    def decide(self, name: str, origin: str = "builtin", aliases: Iterable[str] = ()) -> str:
        """`aliases`: other names of the same tool (an MCP tool's `server__tool`), matched like `name`."""
        names = [name, *aliases]

        def match(patterns):
            return any(self._match(patterns, n) for n in names)

        if match(self.deny):
            return "deny"
        if match(self.allow) or name in self.remembered or self.yes:
            return "allow"
        for pattern, decision in self.rules.items():
            if match([pattern]):
                if decision == "allow" and self.ask_all:
                    return "ask"
                return decision
        if self.ask_all:
            return "ask"
        return DEFAULT_BY_ORIGIN.get(origin, "ask")

    def remember(self, name: str) -> None:
        """'always' at the prompt: allow this tool for the rest of the session."""
        self.remembered.add(name)
