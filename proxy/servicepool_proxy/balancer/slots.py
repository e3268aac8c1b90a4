"""The slots of a per-slot engine (llama.cpp, Ollama) as the proxy sees them.

Such an engine keeps one prompt per slot. llama.cpp gives a request the idle slot whose
prompt shares the most with the new one (above a small similarity), else the least recently
used idle slot; with no slot idle the request waits for the next one to free. So a prefix
held by a busy slot is a miss: the request takes another slot and computes the prompt
again, unless the engine's host prompt cache (`--cache-ram`) gives it back. The mirror
follows the proxy's own requests through the same rule, by prefix family (a prompt's first
block), and learns from answers how much of a prefix not held by an idle slot the engine
still restores.
"""

from __future__ import annotations

from collections import deque

NO_SLOT = -1
_LEARNING_RATE = 0.1


class SlotTicket:
    """One request's place on a per-slot member: its slot, or NO_SLOT while it waits;
    whether an idle slot held its prefix when it was sent, and how many of its blocks the
    proxy's index held there."""

    __slots__ = ("held", "matched", "root", "slot")

    def __init__(self, root: int, held: bool, matched: int) -> None:
        self.root = root
        self.held = held
        self.matched = matched
        self.slot = NO_SLOT


class SlotMirror:
    """Which prefix family each slot of one member last served, and which slots are busy."""

    __slots__ = ("busy", "holds", "restored", "used", "waiting")

    def __init__(self, slots: int) -> None:
        self.holds = [0] * slots  # the root of the prompt each slot last served (0: none)
        self.busy = [False] * slots
        self.used = [0.0] * slots  # when each slot was last given a request
        self.waiting: deque[SlotTicket] = deque()
        # Share of a prefix's cached blocks the engine still had when no idle slot held it
        # (its host prompt cache), learned from answers; a half until told.
        self.restored = 0.5

    def __len__(self) -> int:
        return len(self.holds)

    def idle_holding(self, root: int) -> bool:
        """True when an idle slot holds the prefix family."""
        return any(h == root and not b for h, b in zip(self.holds, self.busy, strict=True))

    def take(self, root: int, matched: int, now: float) -> SlotTicket:
        """A request of the family (`matched` blocks of it in the index) starts: the slot
        the engine gives it, as llama.cpp picks (or a place in the wait for a free slot)."""
        ticket = SlotTicket(root, self.idle_holding(root), matched)
        self._seat(ticket, now)
        return ticket

    def _seat(self, ticket: SlotTicket, now: float) -> None:
        idle = [i for i, b in enumerate(self.busy) if not b]
        if not idle:
            self.waiting.append(ticket)
            return
        holding = [i for i in idle if self.holds[i] == ticket.root]
        slot = holding[0] if holding else min(idle, key=lambda i: self.used[i])
        self.holds[slot], self.busy[slot], self.used[slot] = ticket.root, True, now
        ticket.slot = slot

    def free(self, ticket: SlotTicket, now: float) -> None:
        """The request ended: its slot is idle again (or it leaves the wait), and the
        oldest waiting request takes the slot."""
        if ticket.slot == NO_SLOT:
            if ticket in self.waiting:
                self.waiting.remove(ticket)
            return
        if ticket.slot < len(self.busy):
            self.busy[ticket.slot] = False
        ticket.slot = NO_SLOT
        if self.waiting:
            self._seat(self.waiting.popleft(), now)

    def learn_restored(self, share: float) -> None:
        """A request whose prefix no idle slot held found this share of it cached."""
        self.restored += _LEARNING_RATE * (min(1.0, max(0.0, share)) - self.restored)
