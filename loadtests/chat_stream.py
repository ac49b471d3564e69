"""Streaming chat users: the main persona. Measures TTFT, ITL, TPOT, tokens/s and E2E per request.

locust -f loadtests/chat_stream.py --headless -u 50 -r 10 -t 5m --host http://127.0.0.1:4000
"""

from __future__ import annotations

from pathlib import Path

import _gates  # noqa: F401  # pylint: disable=unused-import  # registers the probe and the SLO gates
from locust import run_single_user, task

from aiswarm_loadtest.locust_base import OpenAIUser


class ChatStreamUser(OpenAIUser):
    """Closed loop: one streaming chat completion after another (or on --per-user-rps slots)."""

    prompt_dir = Path(__file__).parent / "prompts"

    @task
    def chat_stream(self) -> None:
        self.stream_chat("chat_stream", self.messages(), self.intended())


if __name__ == "__main__":
    run_single_user(ChatStreamUser)
