"""A try on a member, and the prefill work it adds there until its answer starts."""

from __future__ import annotations

from .member import MemberState


class PendingPrefill:
    """The prompt blocks of one try that its member had not been sent before: counted in the
    member's pending prefill (and the try in its prefilling count) until done()."""

    __slots__ = ("_member", "blocks")

    def __init__(self, member: MemberState, blocks: int) -> None:
        self._member: MemberState | None = member
        self.blocks = blocks
        member.prefilling += 1
        member.prefill_blocks += blocks

    def done(self) -> bool:
        """The answer started (or the try ended); True the first time only."""
        member, self._member = self._member, None
        if member is None:
            return False
        member.prefilling -= 1
        member.prefill_blocks -= self.blocks
        return True


class Lease:
    """One try on a member: whether it is the half-open trial, its pending prefill, and its
    prompt (block hashes, characters) to learn from when the answer reports its cached
    tokens (a plain class: compiled, it is made without running Python code)."""

    __slots__ = ("member", "prefill", "prefix", "prompt_chars", "trial")

    def __init__(
        self, member: MemberState, trial: bool, prefill: PendingPrefill,
        prefix: tuple[int, ...] = (), prompt_chars: int = 0,
    ) -> None:  # fmt: skip
        self.member = member
        self.trial = trial
        self.prefill = prefill
        self.prefix = prefix
        self.prompt_chars = prompt_chars
