"""A simulated clock for argon2: verification costs time in proportion to the hash's parameters (t * m), and only
the simulated clock moves. Timing properties of the login paths are then checked exactly, on a noisy machine too.
"""

from __future__ import annotations

from typing import Any

import pytest
from argon2 import extract_parameters
from argon2.exceptions import InvalidHashError

from db import passwords


class SimulatedArgon2Clock:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 0.0
        self.slept = 0.0
        real_verify = passwords.verify_password

        def verify(password: Any, password_hash: str) -> bool:
            self.now += self.cost(password_hash)
            return real_verify(password, password_hash)

        monkeypatch.setattr(passwords, "verify_password", verify)
        monkeypatch.setattr(passwords.time, "perf_counter", lambda: self.now)
        monkeypatch.setattr(passwords.time, "sleep", self._sleep)
        monkeypatch.setattr(passwords, "_CURRENT_COST", passwords._RunningCost())

    @staticmethod
    def cost(password_hash: str) -> float:
        try:
            parameters = extract_parameters(password_hash)
        except (InvalidHashError, ValueError):
            return 0.0
        return parameters.time_cost * parameters.memory_cost / 1000.0

    def _sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds

    def elapsed(self, action: Any) -> float:
        started = self.now
        action()
        return self.now - started
