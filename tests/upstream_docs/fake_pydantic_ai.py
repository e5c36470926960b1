"""A scripted stand-in for the bits of pydantic_ai the upstream graph examples use (`Agent.run`, `format_as_xml`).

Each agent answers by the type of output it was asked for, deterministically, so an example gives the same output in
every process: the question agent asks about France, the evaluator accepts `Paris`, the email writer writes the
welcome email, and the reviewer asks for one rewrite and accepts the second email.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

ModelMessage = dict[str, Any]

OutputT = TypeVar('OutputT')
DepsT = TypeVar('DepsT')


def format_as_xml(obj: object) -> str:
    return f'<data>{obj!r}</data>'


@dataclass
class RunResult(Generic[OutputT]):
    output: OutputT
    prompt: str

    def new_messages(self) -> list[ModelMessage]:
        return [{'prompt': self.prompt}, {'output': repr(self.output)}]


@dataclass
class Agent(Generic[DepsT, OutputT]):
    model: str
    output_type: Any = str
    system_prompt: str = ''
    instrument: bool = False
    calls: list[str] = field(default_factory=list)

    async def run(self, prompt: str, *, message_history: list[ModelMessage] | None = None) -> RunResult[Any]:
        self.calls.append(prompt)
        return RunResult(self._answer(prompt, len(message_history or []) // 2), prompt)

    def _answer(self, prompt: str, turn: int) -> Any:
        output_type = self.output_type
        if output_type is str:
            return 'What is the capital of France?'
        members = getattr(output_type, '__args__', (output_type,))
        names = [getattr(m, '__name__', '') for m in members]
        if names == ['EvaluationResult']:
            correct = "'answer': 'Paris'" in prompt
            return output_type(
                correct=correct, comment='Well done, Paris is right.' if correct else 'Wrong: try again.'
            )
        if names == ['Email']:
            return output_type(subject='Welcome to our tech blog!', body='Hello John, Welcome to our tech blog! ...')
        if names == ['EmailRequiresWrite', 'EmailOk']:
            requires_write, ok = members
            review = len(self.calls)
            return requires_write(feedback='Mention Haskel, Lisp and Fortran.') if review == 1 else ok()
        raise AssertionError(f'the fake agent has no answer of type {output_type!r}')


__all__ = ('Agent', 'BaseModel', 'ModelMessage', 'format_as_xml')
