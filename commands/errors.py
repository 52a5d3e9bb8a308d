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
