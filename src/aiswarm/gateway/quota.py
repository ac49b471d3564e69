"""Quota rotation: a deployment that answered 429 rests until its quota frees; the group's other keys serve.

Enabled by ``litellm_settings.callbacks: [aiswarm.gateway.quota.quota_rotation]``; the gateway
role adds it with ``litellm_quota_rotation_enabled``. It runs inside each LiteLLM worker process.

Why: the design runs Gemini with two keys ("quota management: dual key rotation"), and the
gateway config gives each key a deployment of its own in one model group. LiteLLM 1.108.7 does
retry a request whose first chunk failed with 429, but on a deployment picked at random again
(``Router._deployment_ids_to_skip_on_retry`` skips only deployments that answered a status it
would not retry, and 429 is one it retries), and it never cools the deployment down: a stream's
first-chunk error is raised by ``Router._acompletion`` after ``litellm.acompletion`` returned,
so the failure callbacks that count fails and set cooldowns never see it. Measured in the lab
with a quota of 0 on the first key: 5.2 % of requests failed with the provider's 429, since
three picks in a row of the spent key happen one time in eight.

What it does, in ``async_filter_deployments`` (the router's last word before it picks a
deployment, on every attempt, retries and fallbacks included):

- it reads the attempts this request already made (``previous_models`` in the request's
  metadata, which the router's ``log_retry`` writes before each retry) and notes every
  deployment that answered a quota error (the provider's own error, mapped or not, with 429 or
  ``RESOURCE_EXHAUSTED`` in the body LiteLLM quotes) as resting until its quota frees: the
  delay the provider gave (Gemini's ``retryDelay``, a "retry in N s" or a Retry-After in the message),
  else `cooldown_s`, at most `max_cooldown_s`;
- it drops resting deployments from the candidates, so the retry goes to another key and the
  requests that follow skip the spent one until its delay is over (then one request tries it
  again, and if the quota is still spent the retry serves it elsewhere);
- when every deployment of the group rests it raises a ``RateLimitError`` that names the group,
  its resting deployments and when the first is free again. The router takes that as the
  attempt's failure and moves to the group's fallbacks at once; a client with no tier left
  reads which tier's quota is spent instead of waiting on retries of a key known to be spent.

When a whole fallback chain fails, LiteLLM answers with the first group's error ("No
deployments available for selected model ... swarm-chat"), which names neither the tiers it
tried nor why they failed. The failure hook (``async_post_call_failure_hook``) replaces it with
what each group of the chain said, in the order tried, from the same attempt records, the
failure callbacks and this filter's own verdicts: "every tier of the fallback chain failed:
swarm-chat: no deployment in rotation; deepseek-v3.1-free: provider unavailable (503);
gemini-flash: every key over its provider quota, the first free again in 52 s; ...", with 429
when every group failed on quota and 503 otherwise. LiteLLM records no error of its own for a
group without retries late in the chain; such a group reads "failed (its own error was not
recorded ...)".

Deployment ids are the gateway config's ``model_info.id`` (``<group>.<provider>.key<position>`` for cloud
keys): a key's value is never read, logged or shown. Settings come from the environment of the
gateway's unit: ``AISWARM_QUOTA_COOLDOWN_S`` (default 60) and ``AISWARM_QUOTA_MAX_COOLDOWN_S``
(default 3600). On ``/metrics``: ``aiswarm_quota_errors_total{deployment}`` and
``aiswarm_quota_rest_until_seconds{deployment}`` (Unix time; the deployment rests while it is
above ``time()``, whichever worker saw the 429).
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiswarm.gateway.guard import deployment_id

try:
    from fastapi import HTTPException
except ImportError:  # the unit tests run without the proxy's web stack
    HTTPException = None  # type: ignore[assignment,misc]

try:
    from litellm import RateLimitError
    from litellm.integrations.custom_logger import CustomLogger
except ImportError:  # the unit tests and tools that only use the pure parts

    class CustomLogger:  # type: ignore[no-redef]
        """Stand-in base when LiteLLM is not installed."""

    class RateLimitError(Exception):  # type: ignore[no-redef]
        """Stand-in for litellm.RateLimitError when LiteLLM is not installed."""

        def __init__(self, message: str, llm_provider: str, model: str) -> None:
            super().__init__(message)
            self.message, self.llm_provider, self.model = message, llm_provider, model


try:
    from prometheus_client import Counter, Gauge

    _ERRORS: Counter | None = Counter(
        "aiswarm_quota_errors", "Quota errors (429) seen per deployment by the quota rotation", ["deployment"]
    )
    _RESTING: Gauge | None = Gauge(
        "aiswarm_quota_rest_until_seconds",
        "Unix time until which a deployment rests after a quota error (resting while above time())",
        ["deployment"],
        multiprocess_mode="livemax",
    )
except ImportError:  # the unit tests run without prometheus_client too
    _ERRORS = None
    _RESTING = None

log = logging.getLogger("aiswarm.quota")

DEFAULT_COOLDOWN_S = 60.0
DEFAULT_MAX_COOLDOWN_S = 3600.0
# A provider's own quota error carries its status in the body LiteLLM quotes: OpenAI-compatible
# providers (OpenRouter) `"code": 429`, Google `"code": 429` and `RESOURCE_EXHAUSTED`. The type
# alone does not tell: LiteLLM raises RateLimitError for its own conditions too ("No deployments
# available"), and so do the gateway's hooks (a spent budget, every key resting).
_QUOTA_TEXT = re.compile(r"\b429\b|RESOURCE_EXHAUSTED")
_OWN_ERRORS = ("spend guard:", "over its provider quota (")
_DELAYS = (
    re.compile(r"""["']?retryDelay["']?\s*:\s*["']?(\d+(?:\.\d+)?)s""", re.IGNORECASE),
    re.compile(r"retry[ -]after[\"']?\s*[:=]?\s*(\d+(?:\.\d+)?)", re.IGNORECASE),
    re.compile(r"retry in (\d+(?:\.\d+)?)\s*s", re.IGNORECASE),
)


class QuotaSettingsError(ValueError):
    """A setting of the quota rotation is not what it must be; the message names it."""


def _seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name, "")
    if raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise QuotaSettingsError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise QuotaSettingsError(f"{name} must be a positive number of seconds, got {raw!r}")
    return value


def is_quota_error(attempt: Mapping[str, Any]) -> bool:
    """Whether a ``previous_models`` record is a quota error (429) of its deployment."""
    text = str(attempt.get("exception_string") or "")
    if any(own in text for own in _OWN_ERRORS):
        return False  # raised in a filter before any deployment was asked
    return bool(_QUOTA_TEXT.search(text))


def retry_delay(text: str) -> float | None:
    """The delay a provider's error asks for, in seconds, or None when it names none."""
    for pattern in _DELAYS:
        match = pattern.search(text)
        if match:
            return float(match.group(1))
    return None


def _attempts(request_kwargs: Mapping[str, Any] | None) -> Iterable[Mapping[str, Any]]:
    if not request_kwargs:
        return ()
    for key in ("litellm_metadata", "metadata"):
        metadata = request_kwargs.get(key)
        if isinstance(metadata, Mapping) and isinstance(metadata.get("previous_models"), list | tuple):
            return [a for a in metadata["previous_models"] if isinstance(a, Mapping)]
    return ()


def _request_id(request: Mapping[str, Any] | None) -> str:
    """One id for a request across its attempts: the proxy's call id, which the router's kwargs
    and the failure hook's request data both carry (the trace id is the router's own)."""
    for key in ("litellm_call_id", "litellm_trace_id"):
        value = (request or {}).get(key)
        if isinstance(value, str) and value:
            return value
    return str(id(request))


def _identity(attempt: Mapping[str, Any]) -> tuple:
    return (
        attempt.get("model_group"),
        attempt.get("deployment_id"),
        attempt.get("attempted_retries"),
        attempt.get("exception_type"),
        str(attempt.get("exception_string") or "")[:200],
    )


def outcome(attempt: Mapping[str, Any]) -> str:
    """What a failed attempt's group said, in a few words a client can act on."""
    text = str(attempt.get("exception_string") or "")
    kind = str(attempt.get("exception_type") or "error")
    if "over its provider quota (" in text:
        return "every key over its provider quota" + (
            f", the first free again in {text.rsplit('free again in ', 1)[-1].split()[0]} s"
            if "free again in " in text
            else ""
        )
    if is_quota_error(attempt):
        return "provider quota spent (429)"
    if "spend guard:" in text:
        return "paid tier stopped by the spend guard (budget spent)"
    if any(
        sign in text
        for sign in ("Cannot connect", "Connection refused", "Connection error", "Connect call failed")
    ):
        return "cannot reach it (connection refused)"
    if "No deployments available" in text:
        return "no deployment available (engine out of rotation or cooling down)"
    match = re.search(r"\b(5\d\d)\b", text)
    if match or kind in ("ServiceUnavailableError", "InternalServerError", "BadGatewayError"):
        return f"provider unavailable ({match.group(1) if match else kind})"
    if kind in ("APIConnectionError", "Timeout"):
        return f"cannot reach it ({kind})"
    return kind


UNREPORTED = "failed (its own error was not recorded, see the gateway's log)"


@dataclass
class _Request:
    """What one request's failed attempts said, group by group, in the order they were tried."""

    seen: set[tuple] = field(default_factory=set)
    texts: dict[str, Any] = field(default_factory=dict)  # error text -> the group it was first seen under
    outcomes: dict[str, str] = field(default_factory=dict)  # group -> what its last attempt said

    def said(self, group: str, what: str) -> None:
        self.outcomes[group] = what

    def tried(self, group: str) -> None:
        """The group is being asked; what it says comes later (or never, if it serves)."""
        self.outcomes.setdefault(group, UNREPORTED)


def _copied(text: str, group: str, first_group: Any, first_text: bool, request: _Request) -> bool:
    """Whether a record filed under `group` carries another group's error."""
    if first_group == group:
        return False
    named = re.search(r"every deployment of (\S+) is over", text)
    if named and named.group(1) != group:
        return True
    return not first_text and next(iter(request.texts), None) == text


def _deployment_id(deployment: Any) -> str | None:
    info = deployment.get("model_info") if isinstance(deployment, Mapping) else None
    value = info.get("id") if isinstance(info, Mapping) else None
    return value if isinstance(value, str) else None


class QuotaRotation(CustomLogger):
    """Rests deployments that answered a quota error and routes around them."""

    def __init__(
        self,
        cooldown_s: float = DEFAULT_COOLDOWN_S,
        max_cooldown_s: float = DEFAULT_MAX_COOLDOWN_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        if cooldown_s <= 0 or max_cooldown_s < cooldown_s:
            raise QuotaSettingsError(
                "cooldown_s must be positive and max_cooldown_s at least cooldown_s, "
                f"got {cooldown_s} and {max_cooldown_s}"
            )
        self.cooldown_s = cooldown_s
        self.max_cooldown_s = max_cooldown_s
        self.clock = clock
        self.resting: dict[str, float] = {}  # deployment id -> clock time it may serve again
        self._requests: dict[str, _Request] = {}  # call id -> what its attempts said so far

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> QuotaRotation:
        env = os.environ if environ is None else environ
        cooldown = _seconds(env, "AISWARM_QUOTA_COOLDOWN_S", DEFAULT_COOLDOWN_S)
        ceiling = _seconds(env, "AISWARM_QUOTA_MAX_COOLDOWN_S", DEFAULT_MAX_COOLDOWN_S)
        if ceiling < cooldown:
            raise QuotaSettingsError(
                f"AISWARM_QUOTA_MAX_COOLDOWN_S ({ceiling}) must be at least "
                f"AISWARM_QUOTA_COOLDOWN_S ({cooldown})"
            )
        return cls(cooldown, ceiling)

    def note(self, attempts: Iterable[Mapping[str, Any]], now: float) -> None:
        """Rest every deployment a quota error came from."""
        for attempt in attempts:
            deployment = attempt.get("deployment_id")
            if not isinstance(deployment, str) or not is_quota_error(attempt):
                continue
            asked = retry_delay(str(attempt.get("exception_string") or ""))
            delay = min(self.max_cooldown_s, asked if asked is not None and asked > 0 else self.cooldown_s)
            until = self.resting.get(deployment, 0.0)
            if until >= now + delay:
                continue
            if until <= now:
                if _ERRORS is not None:
                    _ERRORS.labels(deployment=deployment).inc()
                log.warning("deployment %s answered a quota error: resting for %.0f s", deployment, delay)
            self.resting[deployment] = now + delay
            if _RESTING is not None:
                _RESTING.labels(deployment=deployment).set(time.time() + delay)

    def is_resting(self, deployment: str, now: float) -> bool:
        until = self.resting.get(deployment)
        if until is None:
            return False
        if until <= now:
            del self.resting[deployment]
            return False
        return True

    def _request(self, request: Mapping[str, Any] | None) -> _Request:
        key = _request_id(request)
        found = self._requests.get(key)
        if found is None:
            found = self._requests[key] = _Request()
            if len(self._requests) > 4096:  # bounded: a request that never ends is dropped
                for old in list(self._requests)[:2048]:
                    del self._requests[old]
        return found

    def _new_attempts(
        self, request: _Request, attempts: Iterable[Mapping[str, Any]]
    ) -> list[Mapping[str, Any]]:
        """The records of this request's failed attempts that say something new about a deployment.

        Each filter call sees the request's records again, and the router keeps only the last
        few (``RETRY_BREADCRUMB_LIMIT``, 4 in 1.108.7), so records are told apart by what they
        say, not by their count. Falling back, the router may also log an earlier group's error
        once more under the next group and its deployment (seen in the lab: the Gemini group's
        "every deployment ... is over its provider quota" filed under hermes-3-405b). So an
        error text first seen under another group rests nothing; for the report it still counts
        unless it is the request's first error or names another group, since two groups of one
        provider in an outage answer with the same text."""
        new = []
        for attempt in attempts:
            ident = _identity(attempt)
            if ident in request.seen:
                continue
            request.seen.add(ident)
            text = str(attempt.get("exception_string") or "")[:200]
            group = attempt.get("model_group")
            first_text = not request.texts
            first_group = request.texts.setdefault(text, group)
            if isinstance(group, str) and not _copied(text, group, first_group, first_text, request):
                request.said(group, outcome(attempt))
            if first_group == group:
                new.append(attempt)
        return new

    def filter(self, group: str, deployments: list, request_kwargs: Mapping[str, Any] | None) -> list:
        now = self.clock()
        attempts = _attempts(request_kwargs)
        # A request's record is kept only once it has something to tell: an attempt that failed,
        # or nothing left in rotation. The first attempt of every request (the hot path) keeps none.
        request = self._request(request_kwargs) if attempts or not deployments else None
        if request is not None:
            self.note(self._new_attempts(request, attempts), now)
            request.tried(group)
        if not deployments:  # an earlier filter (the engine guard) left nothing in rotation
            request.said(group, "no deployment in rotation")
            return deployments
        if not self.resting:
            return deployments
        kept = [d for d in deployments if not self.is_resting(_deployment_id(d) or "", now)]
        if kept:
            return kept
        ids = sorted(_deployment_id(d) or "?" for d in deployments)
        free_in = math.ceil(min(self.resting[i] for i in ids if i in self.resting) - now)
        self._request(request_kwargs).said(
            group, f"every key over its provider quota, the first free again in {free_in} s"
        )
        raise RateLimitError(
            message=(
                f"every deployment of {group} is over its provider quota ({', '.join(ids)}); "
                f"the first is free again in {free_in} s"
            ),
            llm_provider="aiswarm",
            model=group,
        )

    def failed_call(self, kwargs: Mapping[str, Any], exception: Any) -> None:
        """A provider call that failed inside ``litellm.acompletion`` (the failure callbacks see
        those, not a stream's first-chunk error): note what its group said, rest it on a 429."""
        params = kwargs.get("litellm_params")
        metadata = params.get("metadata") if isinstance(params, Mapping) else None
        group = metadata.get("model_group") if isinstance(metadata, Mapping) else None
        attempt = {
            "model_group": group,
            "deployment_id": deployment_id(kwargs),
            "exception_type": type(exception).__name__,
            "exception_string": str(exception),
        }
        request = self._request(kwargs)
        identity = _identity(attempt)
        request.seen.add(identity)
        request.texts.setdefault(identity[-1], group)
        if isinstance(group, str):
            request.said(group, outcome(attempt))
        self.note([attempt], self.clock())

    def failure_message(self, request_data: Mapping[str, Any] | None) -> tuple[int, str] | None:
        """(status, message) naming what every group of a failed chain said; None for one group."""
        request = self._requests.pop(_request_id(request_data), None) or _Request()
        self._new_attempts(request, _attempts(request_data))
        report = list(request.outcomes.items())
        if len(report) < 2:
            return None
        quota_only = all("quota" in said for said in request.outcomes.values())
        return (
            429 if quota_only else 503,
            f"every tier of the fallback chain failed: {'; '.join(f'{g}: {said}' for g, said in report)}",
        )

    async def async_log_failure_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        if isinstance(kwargs, Mapping) and kwargs.get("exception") is not None:
            self.failed_call(kwargs, kwargs["exception"])

    async def async_post_call_failure_hook(
        self,
        request_data: dict,
        original_exception: Exception,
        user_api_key_dict: Any,
        traceback_str: str | None = None,
    ) -> Any:
        """Replace the first group's error with what each tier of the chain said."""
        found = self.failure_message(request_data)
        if found is None or HTTPException is None:
            return None
        status, message = found
        return HTTPException(status_code=status, detail={"error": message})

    async def async_filter_deployments(
        self,
        model: str,
        healthy_deployments: list,
        messages: list | None,
        request_kwargs: dict | None = None,
        parent_otel_span: Any = None,
    ) -> list:
        return self.filter(model, healthy_deployments, request_kwargs)


quota_rotation = QuotaRotation.from_env()
