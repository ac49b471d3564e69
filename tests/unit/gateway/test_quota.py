"""Quota rotation: which attempts rest a deployment, for how long, and what the router then sees.

The attempt records are in the shape LiteLLM 1.108.7's ``Router.log_retry`` writes into the
request's metadata (``previous_models``); the error texts are the bodies the providers (and the
lab's stand-ins) send with a 429.
"""

from __future__ import annotations

import pytest

from aiswarm.gateway.quota import (
    QuotaRotation,
    QuotaSettingsError,
    RateLimitError,
    is_quota_error,
    retry_delay,
)

GEMINI_429 = (
    'litellm.RateLimitError: VertexAIException - b\'{"error":{"code":429,"message":"quota of key 0 '
    'exceeded; retry in 37 s","status":"RESOURCE_EXHAUSTED","details":[{"@type":'
    '"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"37s"}]}}\''
)
OPENROUTER_429 = 'OpenrouterException - {"error":{"message":"Rate limit exceeded","code":429}}'


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def attempt(deployment: str | None, text: str, kind: str = "RateLimitError") -> dict:
    return {
        "model_group": "gemini-flash",
        "deployment_id": deployment,
        "exception_type": kind,
        "exception_string": text,
    }


def deployments(*ids: str) -> list[dict]:
    return [{"model_name": "gemini-flash", "model_info": {"id": i}} for i in ids]


def request(*attempts: dict, trace: str = "t1") -> dict:
    return {"litellm_call_id": trace, "metadata": {"previous_models": list(attempts)}}


KEYS = ("gemini-flash.gemini.key0", "gemini-flash.gemini.key1")


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (attempt("d", GEMINI_429), True),
        (attempt("d", OPENROUTER_429), True),
        (
            attempt("d", 'b\'{"error":{"code":429}}\'', kind="VertexAIError"),
            True,
        ),  # unmapped first-chunk error
        (attempt("d", "Connection refused", kind="APIConnectionError"), False),
        (attempt("d", "No deployments available for selected model"), False),  # LiteLLM's own
        (attempt("d", "spend guard: model group 'x' is a paid tier and spent $429.00 of $400"), False),
        (attempt("d", "every deployment of g is over its provider quota (a, b); 429"), False),
    ],
)
def test_only_a_providers_own_quota_error_counts(record: dict, expected: bool) -> None:
    assert is_quota_error(record) is expected


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (GEMINI_429, 37.0),
        ("Retry-After: 12", 12.0),
        ("quota exceeded; retry in 4.5 s", 4.5),
        (OPENROUTER_429, None),
    ],
)
def test_the_delay_the_provider_asks_for(text: str, seconds: float | None) -> None:
    assert retry_delay(text) == seconds


def test_a_retry_skips_the_key_that_answered_429_and_later_requests_skip_it_too() -> None:
    clock = Clock()
    rotation = QuotaRotation(cooldown_s=60, clock=clock)
    # first attempt: nothing failed yet, both keys are candidates
    assert rotation.filter("gemini-flash", deployments(*KEYS), request()) == deployments(*KEYS)
    # the retry after key0's 429: only key1
    assert rotation.filter(
        "gemini-flash", deployments(*KEYS), request(attempt(KEYS[0], GEMINI_429))
    ) == deployments(KEYS[1])
    # another request, no failure of its own: key0 still rests (37 s asked by the provider)
    clock.now += 30
    assert rotation.filter("gemini-flash", deployments(*KEYS), request(trace="t2")) == deployments(KEYS[1])
    clock.now += 8
    assert rotation.filter("gemini-flash", deployments(*KEYS), request(trace="t3")) == deployments(*KEYS)


def test_without_a_delay_in_the_error_the_key_rests_cooldown_s_capped_by_max() -> None:
    clock = Clock()
    rotation = QuotaRotation(cooldown_s=20, max_cooldown_s=30, clock=clock)
    rotation.filter("g", deployments(*KEYS), request(attempt(KEYS[0], OPENROUTER_429)))
    assert rotation.resting[KEYS[0]] == pytest.approx(clock.now + 20)
    rotation.filter(
        "g", deployments(*KEYS, "spare"), request(attempt(KEYS[1], "429; Retry-After: 3600"), trace="t2")
    )
    assert rotation.resting[KEYS[1]] == pytest.approx(clock.now + 30)


def test_an_attempt_is_noted_once_so_a_long_request_does_not_rest_a_key_again() -> None:
    clock = Clock()
    rotation = QuotaRotation(cooldown_s=10, clock=clock)
    failed = attempt(KEYS[0], OPENROUTER_429)
    rotation.filter("g", deployments(*KEYS), request(failed))
    clock.now += 11  # key0 is free again, and the same request makes another attempt
    assert rotation.filter(
        "g", deployments(*KEYS), request(failed, attempt(KEYS[1], "refused", "APIError"))
    ) == (deployments(*KEYS))


def test_every_key_resting_fails_at_once_naming_the_group_and_when_it_frees() -> None:
    clock = Clock()
    rotation = QuotaRotation(cooldown_s=60, clock=clock)
    rotation.filter("gemini-flash", deployments(*KEYS), request(attempt(KEYS[0], GEMINI_429)))
    clock.now += 1
    with pytest.raises(RateLimitError) as caught:
        rotation.filter(
            "gemini-flash", deployments(*KEYS), request(attempt(KEYS[1], OPENROUTER_429), trace="t2")
        )
    message = str(caught.value)
    assert "every deployment of gemini-flash is over its provider quota" in message
    assert KEYS[0] in message and KEYS[1] in message
    assert "free again in 36 s" in message  # key0: 37 s asked, 1 s gone


def test_other_groups_and_an_empty_list_pass_untouched() -> None:
    rotation = QuotaRotation(clock=Clock())
    rotation.filter("gemini-flash", deployments(*KEYS), request(attempt(KEYS[0], GEMINI_429)))
    others = [{"model_info": {"id": "swarm-chat.vllm.starlord"}}]
    assert rotation.filter("swarm-chat", others, request(trace="t2")) == others
    assert rotation.filter("gemini-flash", [], request(trace="t3")) == []


def test_settings_come_from_the_environment_and_bad_ones_are_named() -> None:
    rotation = QuotaRotation.from_env(
        {"AISWARM_QUOTA_COOLDOWN_S": "15", "AISWARM_QUOTA_MAX_COOLDOWN_S": "90"}
    )
    assert (rotation.cooldown_s, rotation.max_cooldown_s) == (15.0, 90.0)
    with pytest.raises(QuotaSettingsError, match="AISWARM_QUOTA_COOLDOWN_S must be a number"):
        QuotaRotation.from_env({"AISWARM_QUOTA_COOLDOWN_S": "soon"})
    with pytest.raises(QuotaSettingsError, match="AISWARM_QUOTA_MAX_COOLDOWN_S must be a positive"):
        QuotaRotation.from_env({"AISWARM_QUOTA_MAX_COOLDOWN_S": "-1"})
    with pytest.raises(QuotaSettingsError, match=r"AISWARM_QUOTA_MAX_COOLDOWN_S \(5.0\) must be at least"):
        QuotaRotation.from_env({"AISWARM_QUOTA_COOLDOWN_S": "10", "AISWARM_QUOTA_MAX_COOLDOWN_S": "5"})


def test_a_failed_chain_is_reported_group_by_group_in_the_order_tried() -> None:
    rotation = QuotaRotation(clock=Clock())
    call = {"litellm_call_id": "c1"}
    # swarm-chat: the engine guard left nothing in rotation
    rotation.filter("swarm-chat", [], {**call, "metadata": {}})
    # deepseek: a provider outage, seen by the failure callback of litellm.acompletion
    outage = Exception('OpenrouterException - {"error":{"message":"stand-in outage","code":503}}')
    rotation.failed_call(
        {
            **call,
            "litellm_params": {"metadata": {"model_group": "deepseek-free"}, "model_info": {"id": "ds.key0"}},
        },
        outage,
    )
    # gemini-flash: key 0 then key 1 answer 429 (the retry path's records), then every key rests
    key0 = attempt(KEYS[0], GEMINI_429) | {"model_group": "gemini-flash", "attempted_retries": 0}
    key1 = attempt(KEYS[1], OPENROUTER_429) | {"model_group": "gemini-flash", "attempted_retries": 1}
    assert rotation.filter(
        "gemini-flash", deployments(*KEYS), {**call, "metadata": {"previous_models": [key0]}}
    )
    with pytest.raises(RateLimitError):
        rotation.filter(
            "gemini-flash", deployments(*KEYS), {**call, "metadata": {"previous_models": [key0, key1]}}
        )
    status, message = rotation.failure_message({**call, "metadata": {"previous_models": [key1]}})
    assert status == 503
    assert message == (
        "every tier of the fallback chain failed: swarm-chat: no deployment in rotation; "
        "deepseek-free: provider unavailable (503); "
        "gemini-flash: every key over its provider quota, the first free again in 37 s"
    )
    assert rotation.failure_message({**call, "metadata": {}}) is None  # the request's record is gone


def test_the_original_error_copied_under_a_later_group_rests_nothing() -> None:
    """Falling back, LiteLLM logs the request's first error again under the group it leaves."""
    rotation = QuotaRotation(clock=Clock())
    first = attempt(KEYS[0], GEMINI_429) | {"model_group": "gemini-flash"}
    copy = attempt("hermes.openrouter.key0", GEMINI_429) | {"model_group": "hermes", "attempted_retries": 0}
    rotation.filter("gemini-flash", deployments(*KEYS), request(first))
    rotation.filter("dolphin", deployments("dolphin.openrouter.key0"), request(first, copy))
    assert set(rotation.resting) == {KEYS[0]}


def test_a_429_seen_by_the_failure_callback_rests_its_deployment() -> None:
    rotation = QuotaRotation(clock=Clock())
    rotation.failed_call(
        {
            "litellm_call_id": "c2",
            "litellm_params": {"metadata": {"model_group": "g"}, "model_info": {"id": KEYS[1]}},
        },
        Exception(OPENROUTER_429),
    )
    assert rotation.filter("g", deployments(*KEYS), request(trace="c3")) == deployments(KEYS[0])


def test_only_quota_errors_make_a_429_chain() -> None:
    rotation = QuotaRotation(clock=Clock())
    rotation.filter("a", deployments(*KEYS), request(attempt(KEYS[0], GEMINI_429) | {"model_group": "a"}))
    with pytest.raises(RateLimitError):
        rotation.filter("a", deployments(KEYS[0]), request(trace="t1"))
    rotation.failed_call(
        {
            "litellm_call_id": "t1",
            "litellm_params": {"metadata": {"model_group": "b"}, "model_info": {"id": "b0"}},
        },
        Exception(OPENROUTER_429),
    )
    status, message = rotation.failure_message(request(trace="t1"))
    assert (
        status == 429
        and "a: every key over its provider quota" in message
        and "b: provider quota spent" in message
    )


def test_the_rotations_own_error_filed_under_the_next_group_is_not_that_groups_outcome() -> None:
    """Seen in the lab: falling back, the router filed gemini-flash's "every deployment ... is over
    its provider quota" under hermes-3-405b; the same provider's 503 under two groups is each one's own."""
    rotation = QuotaRotation(clock=Clock())
    outage = 'ServiceUnavailableError: OpenrouterException - {"error":{"code":503}}'
    own = "litellm.RateLimitError: every deployment of gemini-flash is over its provider quota (k0, k1); the"
    records = [
        attempt("swarm-chat.vllm.a", "Cannot connect to host", "InternalServerError")
        | {"model_group": "swarm-chat"},
        attempt("ds.key0", outage, "ServiceUnavailableError") | {"model_group": "deepseek-free"},
        attempt("grok.key0", outage, "ServiceUnavailableError") | {"model_group": "grok-free"},
        attempt("gemini-flash.gemini.key0", own) | {"model_group": "gemini-flash", "attempted_retries": 2},
        attempt("hermes.key0", own) | {"model_group": "hermes"},
        attempt("dolphin.key0", "Cannot connect to host", "InternalServerError") | {"model_group": "dolphin"},
    ]
    rotation.filter("hermes", deployments("hermes.key0"), request(*records[:5]))
    rotation.filter("dolphin", deployments("dolphin.key0"), request(*records))
    message = rotation.failure_message(request(*records))[1]
    assert message.split(": ", 1)[1].split("; ") == [
        "swarm-chat: cannot reach it (connection refused)",
        "deepseek-free: provider unavailable (503)",
        "grok-free: provider unavailable (503)",
        "gemini-flash: every key over its provider quota",
        "hermes: failed (its own error was not recorded, see the gateway's log)",
        "dolphin: failed (its own error was not recorded, see the gateway's log)",
    ]
    assert rotation.resting == {}  # none of these was a provider's quota error
