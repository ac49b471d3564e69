"""Non-streaming chat users: E2E and completion tokens per request.

locust -f loadtests/chat.py --headless -u 20 -r 5 -t 2m --host http://127.0.0.1:4000
"""

from __future__ import annotations

from pathlib import Path

import _gates  # noqa: F401  # pylint: disable=unused-import  # registers the probe and the SLO gates
from locust import run_single_user, task

from aiswarm_loadtest.locust_base import CHAT_PATH, OpenAIUser, completion_tokens
from aiswarm_loadtest.sse import message_content


class ChatUser(OpenAIUser):
    """Closed loop: one non-streaming chat completion after another."""

    prompt_dir = Path(__file__).parent / "prompts"

    @task
    def chat(self) -> None:
        payload = {
            "model": self.settings.model,
            "messages": self.messages(),
            "max_tokens": self.settings.max_tokens,
        }
        self.post_json("chat", CHAT_PATH, payload, self.intended(), completion_tokens, message_content)


if __name__ == "__main__":
    run_single_user(ChatUser)
