"""Long-context streaming users: a prompt of about --long-context-tokens tokens (default 8000).

    locust -f loadtests/long_context.py --headless -u 4 -r 1 -t 5m --host http://127.0.0.1:4000 \
        --long-context-tokens 100000 --slo-ttft-p95-ms 20000
"""

from __future__ import annotations

from pathlib import Path

import _gates  # noqa: F401  # pylint: disable=unused-import  # registers the probe and the SLO gates
from locust import run_single_user, task

from aiswarm_loadtest.locust_base import OpenAIUser, long_prompt


class LongContextUser(OpenAIUser):
    """Closed loop: streaming chat over a long document, then a question about it."""

    prompt_dir = Path(__file__).parent / "prompts"

    @task
    def long_context(self) -> None:
        document = long_prompt(self.prompt_dir, self.settings.long_context_tokens)
        text = f"{document}\n\nSummarise the document above in three sentences."
        self.stream_chat("long_context", self.messages(text), self.intended())


if __name__ == "__main__":
    run_single_user(LongContextUser)
