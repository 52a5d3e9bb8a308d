"""Errors the user caused. Their text goes to the user as is, so it must say what to change."""

from __future__ import annotations


class UserError(Exception):
    def __init__(self, *problems: str):
        super().__init__("\n".join(problems))
        self.problems = list(problems)

    @property
    def message(self) -> str:
        if len(self.problems) == 1:
            return self.problems[0]
        return "Please fix these:\n" + "\n".join(f"• {problem}" for problem in self.problems)


class Refused(UserError):
    """A refusal by policy rather than a mistake: a ban, a quota, a rate limit, a wrong link
    code. Said like any UserError, and written to the audit log (`why`: what refused it) after the
    request's transaction rolled back, unless the handler wrote it in a transaction that committed
    (`recorded`: a wrong link code is counted where it is checked, so parallel guesses cannot
    outrun the count)."""

    def __init__(self, why: str, *problems: str, recorded: bool = False):
        super().__init__(*problems)
        self.why = why
        self.recorded = recorded
