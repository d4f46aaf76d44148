"""Test-only fault injection: `--fault-error-rate` fails that exact fraction of inference requests, so a
test can give a canary a known error rate and watch the operator judge it. Never set it in production.

Deterministic, not random: an accumulator adds the rate per request and fails the request that brings it to
one, so 0.05 fails exactly every 20th request (the 20th, 40th, ...), whatever the traffic. The rate is
kept as the exact fraction its decimal spelling says (0.05 is 1/20), so float rounding never moves a
failure by one request. Called from the event loop only: no locks.
"""

from __future__ import annotations

from fractions import Fraction

from modelops_inference.errors import InjectedFault


class FaultInjector:
    def __init__(self, rate: float):
        if not 0 < rate <= 1:
            raise ValueError(f"--fault-error-rate must be a fraction from 0 to 1 (0: off), got {rate}")
        self.rate = rate
        fraction = Fraction(repr(rate))
        self._step, self._unit = fraction.numerator, fraction.denominator
        self._debt = 0
        self.injected = 0

    def due(self) -> bool:
        """Whether this request is one to fail (counts it either way)."""
        self._debt += self._step
        if self._debt < self._unit:
            return False
        self._debt -= self._unit
        self.injected += 1
        return True

    def fault(self) -> InjectedFault:
        return InjectedFault(f"injected fault: --fault-error-rate {self.rate} (MODELOPS_FAULT_ERROR_RATE) fails "
                             "this fraction of inference requests on purpose; test only, never set it in "
                             "production")
