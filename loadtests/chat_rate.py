"""Open-loop streaming chat at a fixed request rate: "100 requests per second", whatever the latency.

Each user sends --target-rps / -u requests per second on a fixed schedule without waiting for
answers (up to --max-inflight in flight per user), so a slow target gets the same arrival
rate and its slowness shows as latency and errors, not as a lower rate.

    locust -f loadtests/chat_rate.py --headless -u 4 -r 4 -t 2m --host http://127.0.0.1:4000 \
        --target-rps 100 --slo-min-rps 100
"""

from __future__ import annotations

import time
from pathlib import Path

import _gates  # noqa: F401  # pylint: disable=unused-import  # registers the probe and the SLO gates
import gevent
from gevent.pool import Pool
from locust import constant, run_single_user, task

from aiswarm_loadtest.locust_base import OpenAIUser
from aiswarm_loadtest.schedule import FixedSchedule


class ChatRateUser(OpenAIUser):
    """Open loop: streaming chat requests launched on schedule slots, answers awaited in a pool."""

    prompt_dir = Path(__file__).parent / "prompts"
    open_loop = True
    wait_time = constant(0)

    def on_start(self) -> None:
        users = getattr(self.environment.parsed_options, "num_users", None) or 1
        self.rate_schedule = FixedSchedule(self.settings.target_rps / users, time.time())
        self.pool = Pool(self.settings.max_inflight)

    def on_stop(self) -> None:
        self.pool.kill(block=False)

    @task
    def chat_rate(self) -> None:
        slot = self.rate_schedule.next_slot()
        delay = slot - time.time()
        if delay > 0:
            gevent.sleep(delay)
        self.pool.spawn(self.stream_chat, "chat_rate", self.messages(), slot)


if __name__ == "__main__":
    run_single_user(ChatRateUser)
