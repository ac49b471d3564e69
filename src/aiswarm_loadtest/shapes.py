"""Load shapes. Only one shape may load per run (Locust silently takes the first it finds), so
shapes live here, abstract, and each opt-in file under shapes/ makes one concrete:

    locust -f loadtests/chat_stream.py,shapes/step_ramp.py --headless --host ...
"""

from __future__ import annotations

from locust import LoadTestShape

from aiswarm_loadtest.schedule import step_users


class StepRampShape(LoadTestShape):
    """Step ramp from the --ramp-* options: add --ramp-step-users every --ramp-step-seconds up
    to --ramp-max-users, hold --ramp-hold-seconds, stop. Users start at one step per second."""

    abstract = True

    def tick(self) -> tuple[int, float] | None:
        options = self.runner.environment.parsed_options if self.runner else None
        if options is None:
            return None
        users = step_users(
            self.get_run_time(),
            options.ramp_step_users,
            options.ramp_step_seconds,
            options.ramp_max_users,
            options.ramp_hold_seconds,
        )
        return None if users is None else (users, float(options.ramp_step_users))
