"""Time to first token of one streamed chat completion, measured from outside the server.

Run on the node by verify.yml: `python3 ttft.py BASE_URL MODEL` with the key in LLAMACPP_API_KEY.
Prints one JSON line: ttft_ms (request sent -> first content delta), total_ms, chunks, done.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import time
from urllib.parse import urlsplit


def main() -> int:
    base_url, model = sys.argv[1], sys.argv[2]
    url = urlsplit(base_url)
    body = json.dumps(
        {
            "model": model,
            "stream": True,
            "max_tokens": 16,
            "messages": [{"role": "user", "content": "Say hello."}],
        }
    )
    headers = {
        "Authorization": f"Bearer {os.environ['LLAMACPP_API_KEY']}",
        "Content-Type": "application/json",
    }
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    start = time.perf_counter()
    conn.request("POST", f"{url.path}/chat/completions", body=body, headers=headers)
    resp = conn.getresponse()
    if resp.status != 200:
        print(json.dumps({"error": resp.status, "body": resp.read().decode(errors="replace")}))
        return 1
    ttft = None
    chunks = 0
    done = False
    for raw in resp:
        line = raw.decode().strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            done = True
            break
        chunks += 1
        delta = json.loads(data)["choices"][0].get("delta", {})
        if ttft is None and delta.get("content"):
            ttft = (time.perf_counter() - start) * 1000
    total = (time.perf_counter() - start) * 1000
    print(
        json.dumps(
            {
                "ttft_ms": None if ttft is None else round(ttft, 1),
                "total_ms": round(total, 1),
                "chunks": chunks,
                "done": done,
            }
        )
    )
    return 0 if done and ttft is not None else 1


if __name__ == "__main__":
    sys.exit(main())
