"""Embedding users: batches of document chunks, as the RAG pipeline sends them.

locust -f loadtests/embeddings.py --headless -u 10 -r 5 -t 2m --host http://127.0.0.1:4000
"""

from __future__ import annotations

import random
from pathlib import Path

import _gates  # noqa: F401  # pylint: disable=unused-import  # registers the probe and the SLO gates
from locust import run_single_user, task

from aiswarm_loadtest.locust_base import EMBEDDINGS_PATH, OpenAIUser, load_prompts

BATCH = 8


class EmbeddingsUser(OpenAIUser):
    """Closed loop: one batch of BATCH chunks from the medium prompt set per request."""

    prompt_dir = Path(__file__).parent / "prompts"

    @task
    def embeddings(self) -> None:
        chunks = random.choices(load_prompts(self.prompt_dir, "medium"), k=BATCH)
        payload = {"model": self.settings.embedding_model, "input": chunks}
        self.post_json("embeddings", EMBEDDINGS_PATH, payload, self.intended(), lambda _body: 0)


if __name__ == "__main__":
    run_single_user(EmbeddingsUser)
