# Copyright: (c) 2026, aiswarm.swarm maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Readiness probe of an OpenAI-compatible endpoint (logic behind the openai_endpoint module).

An endpoint is ready when GET /models lists the expected model (or any model when none is
expected) and, unless the probe is `none`, one tiny real request completes. A rejected API key
(HTTP 401/403) stops at once, since waiting does not fix it; everything else is retried until
the deadline. No message ever contains the API key.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible.module_utils.urls import open_url

PROBES = ("chat", "completion", "none")
PROMPT = "Say OK."


class EndpointError(Exception):
    """The endpoint is not ready (yet); retried until the deadline."""


class AuthRejected(EndpointError):
    """The endpoint rejected the API key; not retried."""


class ModelMissing(EndpointError):
    """The endpoint answers but does not list the expected model."""

    def __init__(self, message: str, models: list[str]) -> None:
        super().__init__(message)
        self.models = models


@dataclass
class ProbeResult:
    models: list[str]
    model: str
    latency_ms: float
    attempts: int = 1
    elapsed_s: float = 0.0
    response: dict[str, Any] = field(default_factory=dict)


@dataclass
class Endpoint:
    """Where and how to reach the endpoint."""

    base_url: str
    api_key: str | None = None
    request_timeout: float = 30.0
    validate_certs: bool = True

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        self.base_url = self.base_url.rstrip("/")

    def scrub(self, text: str) -> str:
        """Remove the API key from text that may echo it (error bodies, exception strings)."""
        return text.replace(self.api_key, "***") if self.api_key else text

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], float]:
        """Send one JSON request; return the decoded body and the latency in milliseconds."""
        url = f"{self.base_url}{path}"
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        start = time.monotonic()
        try:
            with open_url(
                url,
                data=data,
                headers=headers,
                method=method,
                timeout=self.request_timeout,
                validate_certs=self.validate_certs,
                http_agent="aiswarm.swarm.openai_endpoint",
            ) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise AuthRejected(
                    f"{method} {url} answered HTTP {exc.code}: the API key was rejected "
                    f"({'no api_key was given' if not self.api_key else 'check api_key'})"
                ) from None
            detail = self.scrub(exc.read(300).decode(errors="replace").strip())
            raise EndpointError(f"{method} {url} answered HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException, UrlsConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise EndpointError(f"{method} {url} failed: {self.scrub(str(reason))}") from None
        latency_ms = round((time.monotonic() - start) * 1000, 1)
        try:
            decoded = json.loads(raw)
        except ValueError:
            raise EndpointError(
                f"{method} {url} did not answer JSON: {self.scrub(raw[:200].decode(errors='replace'))}"
            ) from None
        if not isinstance(decoded, dict):
            raise EndpointError(f"{method} {url} answered JSON that is not an object")
        return decoded, latency_ms


def list_models(endpoint: Endpoint) -> tuple[list[str], float]:
    """Ids from GET /models (OpenAI shape: {"data": [{"id": ...}, ...]})."""
    body, latency = endpoint.request("GET", "/models")
    data = body.get("data")
    if not isinstance(data, list):
        raise EndpointError(f"GET {endpoint.base_url}/models answered without a 'data' list")
    return [str(m["id"]) for m in data if isinstance(m, dict) and "id" in m], latency


def pick_model(endpoint: Endpoint, models: list[str], expected: str | None) -> str:
    """The model to probe: the expected one (which must be listed) or the first listed."""
    if expected is not None:
        if expected not in models:
            found = ", ".join(models) if models else "none"
            raise ModelMissing(
                f"{endpoint.base_url}/models does not list model {expected!r}; models found: {found}", models
            )
        return expected
    if not models:
        raise ModelMissing(f"{endpoint.base_url}/models lists no models yet", models)
    return models[0]


def probe_once(endpoint: Endpoint, expected: str | None, probe: str, max_tokens: int) -> ProbeResult:
    """One readiness check: list models, then (unless probe is none) one tiny real request."""
    if probe not in PROBES:
        raise ValueError(f"probe must be one of {', '.join(PROBES)}, got {probe!r}")
    models, latency = list_models(endpoint)
    model = pick_model(endpoint, models, expected)
    if probe == "none":
        return ProbeResult(models=models, model=model, latency_ms=latency)
    if probe == "chat":
        path = "/chat/completions"
        body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": PROMPT}]}
    else:
        path = "/completions"
        body = {"model": model, "prompt": PROMPT}
    body.update({"max_tokens": max_tokens, "temperature": 0, "stream": False})
    response, latency = endpoint.request("POST", path, body)
    if not isinstance(response.get("choices"), list) or not response["choices"]:
        raise EndpointError(f"POST {endpoint.base_url}{path} answered without choices")
    served = response.get("model") if isinstance(response.get("model"), str) else model
    return ProbeResult(models=models, model=served, latency_ms=latency, response=response)


def wait_ready(
    endpoint: Endpoint,
    expected: str | None = None,
    probe: str = "chat",
    max_tokens: int = 1,
    timeout: float = 300.0,
    delay: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ProbeResult:
    """Probe until ready or until `timeout` seconds have passed (always at least one attempt).

    Raises AuthRejected at once on HTTP 401/403; raises EndpointError (or ModelMissing) naming
    the URL, the number of attempts and the last error when the deadline passes.
    """
    if not 1 <= max_tokens <= 4:
        raise ValueError(f"max_tokens must be between 1 and 4, got {max_tokens}")
    start = clock()
    attempts = 0
    while True:
        attempts += 1
        try:
            result = probe_once(endpoint, expected, probe, max_tokens)
        except AuthRejected:
            raise
        except EndpointError as exc:
            elapsed = clock() - start
            if elapsed + delay > timeout:
                message = (
                    f"{endpoint.base_url} not ready after {round(elapsed, 1)}s ({attempts} attempts, "
                    f"timeout {timeout}s); last error: {exc}"
                )
                if isinstance(exc, ModelMissing):
                    raise ModelMissing(message, exc.models) from None
                raise EndpointError(message) from None
            sleep(delay)
            continue
        result.attempts = attempts
        result.elapsed_s = round(clock() - start, 3)
        return result
