"""The reference backend as stand-in cloud providers: shapes, keys, quotas, outage and the admin endpoint."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from aiswarm_loadtest.refbackend import (
    BackendConfig,
    KeyState,
    StandinState,
    StateError,
    key_hash,
    main,
    serve_in_process,
)
from aiswarm_loadtest.refbackend import serve_in_thread as serve

KEYS = ("test-key-zero", "test-key-one")
# As LiteLLM 1.108.7 calls them with a custom api_base (see the module docstring).
GEMINI = "/v1beta/models/gemini-2.5-flash:generateContent"
GEMINI_STREAM = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
OPENROUTER = "/api/v1/chat/completions"
FAST = {"ttft_ms": 1, "itl_ms": 0, "tokens": 5}


def gemini(client: httpx.Client, key: str, path: str = GEMINI, **body: object) -> httpx.Response:
    payload = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}], **body}
    return client.post(path, json=payload, headers={"x-goog-api-key": key})


def openrouter(client: httpx.Client, key: str, **body: object) -> httpx.Response:
    payload = {"model": "deepseek/deepseek-chat-v3.1:free", "messages": [{"role": "user", "content": "hi"}]}
    return client.post(OPENROUTER, json=payload | body, headers={"Authorization": f"Bearer {key}"})


def no_key_in(response: httpx.Response) -> None:
    for key in KEYS:
        assert key not in response.text and key not in str(response.headers)


def sse_events(text: str) -> list[dict]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


@pytest.mark.parametrize("spelling", ["maxOutputTokens", "max_output_tokens"])  # LiteLLM sends the second
def test_gemini_generate_content_in_googles_shape(spelling: str) -> None:
    with serve(BackendConfig(keys=KEYS, **FAST)) as url, httpx.Client(base_url=url, timeout=5) as client:
        response = gemini(client, KEYS[1], generationConfig={spelling: 3})
    assert response.status_code == 200
    assert response.headers["x-aiswarm-standin"] == "gemini" and response.headers["x-aiswarm-key"] == "1"
    body = response.json()
    candidate = body["candidates"][0]
    assert candidate["content"] == {"parts": [{"text": "tok tok tok "}], "role": "model"}
    assert candidate["finishReason"] == "MAX_TOKENS"
    assert body["usageMetadata"] == {"promptTokenCount": 8, "candidatesTokenCount": 3, "totalTokenCount": 11}
    assert body["modelVersion"] == "gemini-2.5-flash"
    no_key_in(response)


def test_gemini_stream_is_sse_with_usage_on_the_last_event_and_no_done() -> None:
    with serve(BackendConfig(keys=KEYS, **FAST)) as url, httpx.Client(base_url=url, timeout=5) as client:
        response = gemini(client, KEYS[0], GEMINI_STREAM)
        plain = gemini(client, KEYS[0], GEMINI_STREAM.split("?", maxsplit=1)[0])
        by_query = client.post(f"{GEMINI}?key={KEYS[1]}", json={"contents": []})
    assert response.status_code == 200 and response.headers["content-type"] == "text/event-stream"
    events = sse_events(response.text)
    assert len(events) == 5 and "[DONE]" not in response.text
    assert all(e["candidates"][0]["content"]["parts"] == [{"text": "tok "}] for e in events)
    assert [e["candidates"][0].get("finishReason") for e in events] == [None] * 4 + ["STOP"]
    assert "usageMetadata" not in events[0] and events[-1]["usageMetadata"]["candidatesTokenCount"] == 5
    assert plain.status_code == 400 and "alt=sse" in plain.json()["error"]["message"]
    assert by_query.status_code == 200 and by_query.headers["x-aiswarm-key"] == "1"


def test_openrouter_path_under_a_custom_api_base_streams_and_answers() -> None:
    with serve(BackendConfig(keys=KEYS, **FAST)) as url, httpx.Client(base_url=url, timeout=5) as client:
        answer = openrouter(client, KEYS[0])
        stream = openrouter(client, KEYS[1], stream=True)
        models = client.get("/api/v1/models", headers={"Authorization": f"Bearer {KEYS[0]}"})
    assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"] == "tok " * 5
    assert answer.headers["x-aiswarm-standin"] == "openai" and answer.headers["x-aiswarm-key"] == "0"
    assert stream.headers["x-aiswarm-key"] == "1" and stream.text.endswith("data: [DONE]\n\n")
    assert models.status_code == 200
    no_key_in(answer)


def test_an_unknown_key_is_refused_in_each_providers_shape() -> None:
    with serve(BackendConfig(keys=KEYS, **FAST)) as url, httpx.Client(base_url=url, timeout=5) as client:
        wrong_openai = openrouter(client, "not-a-key")
        wrong_gemini = gemini(client, "not-a-key")
    assert wrong_openai.status_code == 401 and wrong_openai.json()["error"]["type"] == "authentication_error"
    assert wrong_gemini.status_code == 400
    error = wrong_gemini.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and error["details"][0]["reason"] == "API_KEY_INVALID"
    assert "x-aiswarm-key" not in wrong_gemini.headers


def test_quota_per_key_gives_429_with_retry_after_and_leaves_other_keys_alone() -> None:
    config = BackendConfig(keys=KEYS, quota=2, quota_window_s=30, **FAST)
    with serve(config) as url, httpx.Client(base_url=url, timeout=5) as client:
        statuses = [gemini(client, KEYS[0]).status_code for _attempt in range(2)]
        refused = gemini(client, KEYS[0])
        other = gemini(client, KEYS[1])
        refused_openai = openrouter(client, KEYS[0])
    assert statuses == [200, 200] and other.status_code == 200
    assert refused.status_code == 429 and 1 <= int(refused.headers["retry-after"]) <= 30
    error = refused.json()["error"]
    assert error["code"] == 429 and error["status"] == "RESOURCE_EXHAUSTED"
    assert error["details"][0]["@type"].endswith("RetryInfo") and error["details"][0]["retryDelay"].endswith(
        "s"
    )
    assert refused.headers["x-aiswarm-key"] == "0"
    assert refused_openai.status_code == 429 and refused_openai.json()["error"]["code"] == 429
    assert "retry-after" in refused_openai.headers
    no_key_in(refused)


def test_admin_endpoint_changes_quota_and_outage_at_run_time_and_resets() -> None:
    with serve(BackendConfig(keys=KEYS, **FAST)) as url, httpx.Client(base_url=url, timeout=5) as client:
        assert gemini(client, KEYS[0]).status_code == 200
        client.post("/_admin/state", json={"keys": {"0": {"quota": 0}}}).raise_for_status()
        assert gemini(client, KEYS[0]).status_code == 429
        assert gemini(client, KEYS[1]).status_code == 200
        client.post("/_admin/state", json={"keys": {"all": {"quota": 0}}}).raise_for_status()
        assert gemini(client, KEYS[1]).status_code == 429
        state = client.post("/_admin/state", json={"reset": True, "outage": True}).json()
        down = gemini(client, KEYS[0])
        assert down.status_code == 503 and down.json()["error"]["status"] == "UNAVAILABLE"
        assert openrouter(client, KEYS[0]).status_code == 503
        assert client.get("/health").status_code == 200  # the instrument itself is up
        client.post("/_admin/state", json={"reset": True}).raise_for_status()
        assert gemini(client, KEYS[0]).status_code == 200
        seen = client.get("/_admin/state")
    assert state["outage"] is True and [k["quota"] for k in state["keys"]] == [None, None]
    keys = seen.json()["keys"]
    assert [k["sha256"] for k in keys] == [key_hash(k) for k in KEYS]
    assert keys[0]["served"] == 1 and keys[0]["refused"] == 0  # the reset forgot the counts
    no_key_in(seen)


@pytest.mark.parametrize(
    ("patch", "words"),
    [
        ({"keys": {"2": {"quota": 1}}}, "keys.2: expected a key position 0..1 or all"),
        ({"keys": {"0": {"quota": -1}}}, "keys.0.quota: expected requests per window >= 0"),
        ({"keys": {"0": {"window_s": 0}}}, "keys.0.window_s: expected seconds > 0"),
        ({"keys": {"0": {"limit": 1}}}, "keys.0: expected an object with quota"),
        ({"outage": "yes"}, "outage: expected true or false"),
        ({"keys": [0]}, "keys: expected"),
        ({"quota": 3}, "unknown fields ['quota']"),
        ([1], "body: expected a JSON object"),
    ],
)
def test_a_bad_admin_request_names_the_field_and_changes_nothing(patch: object, words: str) -> None:
    state = StandinState(BackendConfig(keys=KEYS))
    with pytest.raises(StateError, match="^" + re.escape(words)):
        state.apply(
            {"outage": True, "keys": {"1": {"quota": 0}}, **patch} if isinstance(patch, dict) else patch
        )
    assert state.outage is False and state.keys[1].quota is None


def test_admin_refuses_a_bad_body_over_http() -> None:
    with serve(BackendConfig(keys=KEYS, **FAST)) as url, httpx.Client(base_url=url, timeout=5) as client:
        bad = client.post("/_admin/state", content=b"{not json")
        wrong = client.post("/_admin/state", json={"keys": {"9": {}}})
    assert bad.status_code == 400 and wrong.status_code == 400
    assert "keys.9" in wrong.json()["error"]["message"]


def test_the_quota_window_slides() -> None:
    state = KeyState(quota=2, window_s=10)
    assert state.admit(0.0) is None and state.admit(4.0) is None
    assert state.admit(6.0) == pytest.approx(4.0)  # the first request leaves the window at 10 s
    assert state.admit(10.5) is None and state.admit(12.0) == pytest.approx(2.0)
    assert (state.served, state.refused) == (3, 2)


def test_config_refuses_bad_stand_in_settings() -> None:
    with pytest.raises(ValueError, match="quota"):
        BackendConfig(keys=KEYS, quota=-1)
    with pytest.raises(ValueError, match="keys"):
        BackendConfig(keys=(" spaced ",))
    with pytest.raises(ValueError, match="api_key and keys"):
        BackendConfig(keys=KEYS, api_key="x")
    assert KEYS[0] not in repr(BackendConfig(keys=KEYS))


def test_cli_reads_keys_from_a_file_and_sets_the_initial_state(tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text(f"{KEYS[0]}\n\n{KEYS[1]}\n", encoding="utf-8")
    args = ["--keys-file", str(keys), "--quota", "1", "--ttft-ms", "1", "--itl-ms", "0", "--tokens", "2"]
    with serve_in_process(args) as url, httpx.Client(base_url=url, timeout=5) as client:
        first, second = gemini(client, KEYS[1]), gemini(client, KEYS[1])
    assert (first.status_code, second.status_code) == (200, 429)
    assert first.headers["x-aiswarm-key"] == "1"
    with serve_in_process([*args, "--outage"]) as url:
        assert (
            httpx.post(
                f"{url}{OPENROUTER}", json={}, headers={"Authorization": f"Bearer {KEYS[0]}"}
            ).status_code
            == 503
        )


@pytest.mark.parametrize("argv", [["--keys-file", "/nonexistent/keys"], ["--quota", "-2"]])
def test_cli_refuses_missing_keys_file_or_negative_quota(argv: list[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(argv)
    empty = tmp_path / "empty"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(SystemExit):
        main(["--keys-file", str(empty)])
