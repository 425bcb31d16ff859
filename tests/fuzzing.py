"""The schemathesis run shared by the API fuzz tests: one operation in one generation mode, a
few examples against a live server. Bounded in time: no shrinking, no example database."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode


@dataclass
class Fuzzer:
    """Calls operations of a server at ``base_url`` with ``headers``, checking every answer
    with ``checks``; :attr:`calls` counts the calls made."""

    base_url: str
    headers: dict[str, str]
    checks: list[Any]
    calls: int = 0

    def run(
        self,
        operation: Any,
        mode: GenerationMode,
        examples: int,
        *,
        path_parameters: dict[str, str] | None = None,
    ) -> None:
        """``examples`` generated cases of ``operation`` (with ``path_parameters`` fixed).
        Raises what schemathesis and hypothesis raise: the failed checks (an exception group),
        or ``Unsatisfiable`` when no case can be generated."""

        @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
        @settings(
            max_examples=examples,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            self.calls += 1
            case.call_and_validate(base_url=self.base_url, headers=self.headers, checks=self.checks)

        run()
