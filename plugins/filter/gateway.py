# Copyright: (c) 2026, aiswarm.swarm maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filter generating the LiteLLM proxy configuration from the model catalog and the inventory.

LiteLLM keys used here were checked against the LiteLLM docs (docs.litellm.ai):
- proxy/configs and proxy/config_settings: top-level `model_list`, `router_settings`,
  `litellm_settings`, `general_settings`; `model_list[].model_name`, `litellm_params`
  (`model`, `api_base`, `api_key`, `rpm`, `tpm`, `stream_timeout`), `model_info` (`id`,
  `input_cost_per_token`, `output_cost_per_token`); `general_settings.master_key`,
  `database_url`, `background_health_checks`, `health_check_interval`;
  `litellm_settings.callbacks`, `request_timeout`, `drop_params`; `os.environ/NAME` references.
- router/api_reference/configuration and the proxy config schema: `router_settings.routing_strategy`
  (`simple-shuffle`), `num_retries`, `timeout`, `allowed_fails`, `cooldown_time`, `redis_host`,
  `redis_port`, `redis_password`, `fallbacks: [{"group": ["fallback-group", ...]}]`,
  `model_group_retry_policy: {"group": {"DefaultRetries": n}}` (RetryPolicy in litellm/types/router.py),
  `allowed_fails_policy: {"TimeoutErrorAllowedFails": n}` (AllowedFailsPolicy, same file).
- router_utils/cooldown_handlers.py (1.108.7): `_is_cooldown_required` never cools a deployment
  down for an APIConnectionError (connection refused), which is why local groups that have a
  fallback get no retries of their own; `_is_allowed_fails_set_on_router` ignores an
  `allowed_fails` equal to LiteLLM's default, which is why the policy is always written.
- proxy/caching_settings: `litellm_settings.cache: true` with `cache_params` `type: redis`, `host`,
  `port`, `password`, `supported_call_types` (caching/caching.py `Cache.__init__`).
- pass_through/vllm: the `hosted_vllm/<served model>` provider prefix with `api_base`; llama.cpp's
  server is reached as a generic OpenAI-compatible provider, `openai/<served model>`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

TIERS = ("local", "premium", "free", "specialized")
CLOUD_TIERS = ("premium", "free", "specialized")
ENGINES = ("vllm", "llamacpp")
ENGINE_PREFIX = {"vllm": "hosted_vllm", "llamacpp": "openai"}
# Engines started without --api-key accept any bearer token, but the OpenAI client LiteLLM uses
# refuses an empty one; this placeholder is not a secret.
NO_KEY_PLACEHOLDER = "none"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

SETTINGS_DEFAULTS: dict[str, Any] = {
    "providers": {},
    "routing_strategy": "simple-shuffle",
    "timeout": 600,
    "stream_timeout": 60,
    "local_stream_timeout": 30,
    "num_retries": 2,
    "local_num_retries": 0,
    "allowed_fails": 3,
    "cooldown_time": 30,
    "redis": None,
    "database_url_env": None,
    "master_key_env": None,
    "callbacks": [],
    "background_health_checks": True,
    "health_check_interval": 300,
    "fallback_tiers": ["free", "premium"],
    "local_api_key_env": None,
    "context_window_fallbacks": {},
}
# Inventory variable that bounds each engine's context window on its host.
CONTEXT_VARS = {"vllm": "vllm_max_context", "llamacpp": "llamacpp_n_ctx"}


def _fail(msg: str) -> AnsibleFilterError:
    return AnsibleFilterError(f"litellm_config: {msg}")


def _env_ref(value: Any, field: str) -> str:
    """`os.environ/NAME` for a variable NAME; refuses anything that is not a variable name.

    The refusal message never echoes the value, in case a secret was passed by mistake.
    """
    if not isinstance(value, str) or not _ENV_NAME.match(value):
        raise _fail(
            f"{field} must be the NAME of an environment variable (letters, digits, '_'), "
            "not the secret itself; the value given is not a variable name"
        )
    return f"os.environ/{value}"


def env_var_name(*parts: str | int) -> str:
    """The one rule for the names of key variables: ``AISWARM_<PARTS>``, upper case, '_' for the rest."""
    return re.sub(r"[^A-Z0-9_]", "_", "_".join(["AISWARM", *map(str, parts)]).upper())


def env_var_for_key(provider: str, index: int) -> str:
    """Environment variable that carries key number `index` of `provider`."""
    return env_var_name(provider, "API_KEY", index)


def env_var_for_engine_key(engine: str, host: str) -> str:
    """Environment variable that carries the API key of `engine` on inventory host `host`."""
    return env_var_name(engine, host, "API_KEY")


def _address(host: str, hostvars: Mapping[str, Any]) -> str:
    """The host's private address, else its default IPv4 address from facts, else its name."""
    if hostvars.get("swarm_private_address"):
        return str(hostvars["swarm_private_address"])
    facts = hostvars.get("ansible_facts") or {}
    return str((facts.get("default_ipv4") or {}).get("address") or host)


def gateway_endpoints(
    engine_hosts: Any, hostvars: Any, defaults: Any, group: str
) -> dict[str, list[dict[str, Any]]]:
    """Resolve the inventory's engine hosts into the endpoints input of ``litellm_config``.

    ``engine_hosts`` maps each engine to inventory host names, ``hostvars`` is Ansible's
    ``hostvars``, ``defaults`` maps each engine to ``{port, model}``. A host's own
    ``<engine>_port`` and ``<engine>_served_model_name`` win over the defaults; its address is
    ``swarm_private_address``, else ``ansible_facts.default_ipv4.address``, else its name. A host
    with a non-empty ``<engine>_api_key`` gets ``api_key_env`` (the key itself is never returned).
    Returns ``{engine: [{host, api_base, model, group[, context][, api_key_env]}]}`` for every engine.
    """
    if not isinstance(engine_hosts, Mapping):
        raise AnsibleFilterError(
            "gateway_endpoints: engine_hosts must be a dict of engine -> host names, "
            f"got {type(engine_hosts).__name__}"
        )
    unknown = sorted(set(engine_hosts) - set(ENGINES))
    if unknown:
        raise AnsibleFilterError(f"gateway_endpoints: unknown engines {unknown}; allowed: {list(ENGINES)}")
    result: dict[str, list[dict[str, Any]]] = {}
    for engine in ENGINES:
        result[engine] = []
        for host in engine_hosts.get(engine) or []:
            hv = hostvars[host]
            port = hv.get(f"{engine}_port", defaults[engine]["port"])
            endpoint = {
                "host": host,
                "api_base": f"http://{_address(host, hv)}:{port}/v1",
                "model": hv.get(f"{engine}_served_model_name", defaults[engine]["model"]),
                "group": group,
            }
            context = hv.get(CONTEXT_VARS[engine], defaults[engine].get("context"))
            if context is not None:
                endpoint["context"] = context
            if hv.get(f"{engine}_api_key"):
                endpoint["api_key_env"] = env_var_for_engine_key(engine, host)
            result[engine].append(endpoint)
    return result


def _nonneg_int(settings: Mapping[str, Any], key: str) -> int:
    value = settings[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _fail(f"settings.{key} must be an integer >= 0, got {value!r}")
    return value


def _settings(settings: Any) -> dict[str, Any]:
    if settings is None:
        settings = {}
    if not isinstance(settings, Mapping):
        raise _fail(f"settings must be a dict, got {type(settings).__name__}")
    unknown = sorted(set(settings) - set(SETTINGS_DEFAULTS))
    if unknown:
        raise _fail(f"unknown settings {unknown}; allowed: {sorted(SETTINGS_DEFAULTS)}")
    merged = {**SETTINGS_DEFAULTS, **{k: v for k, v in settings.items() if v is not None}}
    if merged["master_key_env"] is None:
        raise _fail("settings.master_key_env is required: the gateway must not run without a master key")
    for key in (
        "timeout",
        "stream_timeout",
        "local_stream_timeout",
        "num_retries",
        "local_num_retries",
        "allowed_fails",
        "cooldown_time",
    ):
        _nonneg_int(merged, key)
    _nonneg_int(merged, "health_check_interval")
    if not isinstance(merged["callbacks"], list) or not all(isinstance(c, str) for c in merged["callbacks"]):
        raise _fail(f"settings.callbacks must be a list of names, got {merged['callbacks']!r}")
    tiers = merged["fallback_tiers"]
    if not isinstance(tiers, list) or any(t not in CLOUD_TIERS for t in tiers):
        raise _fail(f"settings.fallback_tiers must be a list of {list(CLOUD_TIERS)}, got {tiers!r}")
    cw = merged["context_window_fallbacks"]
    if not isinstance(cw, Mapping) or not all(
        isinstance(v, list) and all(isinstance(g, str) for g in v) for v in cw.values()
    ):
        raise _fail(
            "settings.context_window_fallbacks must be a dict of model group -> list of larger-context "
            f"groups, got {cw!r}"
        )
    if not isinstance(merged["providers"], Mapping):
        raise _fail("settings.providers must be a dict of provider -> {api_keys: [...]}")
    return merged


def _catalog(catalog: Any) -> list[dict[str, Any]]:
    if not isinstance(catalog, list):
        raise _fail(f"catalog must be a list of model groups, got {type(catalog).__name__}")
    seen: set[str] = set()
    entries = []
    for i, entry in enumerate(catalog):
        where = f"catalog[{i}]"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str) or not entry["name"]:
            raise _fail(f"{where} must be a dict with a non-empty 'name', got {entry!r}")
        name = entry["name"]
        where = f"catalog[{i}] ({name})"
        if name in seen:
            raise _fail(f"{where}: duplicate name; every model group needs a unique name")
        seen.add(name)
        tier = entry.get("tier")
        if tier not in TIERS:
            raise _fail(f"{where}: tier {tier!r} is not one of the allowed tiers {list(TIERS)}")
        if tier == "local":
            engines = entry.get("engines")
            if not isinstance(engines, list) or not engines or any(e not in ENGINES for e in engines):
                raise _fail(f"{where}: engines must be a non-empty list of {list(ENGINES)}, got {engines!r}")
        else:
            for key in ("provider", "model"):
                if not isinstance(entry.get(key), str) or not entry[key]:
                    raise _fail(
                        f"{where}: tier {tier} needs '{key}' (e.g. provider: gemini, model: gemini/...)"
                    )
        for key in ("input_cost_per_token", "output_cost_per_token"):
            value = entry.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise _fail(f"{where}: {key} must be a number, got {value!r}")
        for key in ("rpm", "tpm", "context_window"):
            value = entry.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise _fail(f"{where}: {key} must be a positive integer, got {value!r}")
        entries.append(dict(entry))
    return entries


def _endpoints(endpoints: Any) -> dict[str, list[dict[str, Any]]]:
    if endpoints is None:
        return {}
    if not isinstance(endpoints, Mapping):
        raise _fail(
            f"endpoints must be a dict of engine -> list of endpoints, got {type(endpoints).__name__}"
        )
    result: dict[str, list[dict[str, Any]]] = {}
    for engine, items in endpoints.items():
        if engine not in ENGINES:
            raise _fail(f"endpoints.{engine}: unknown engine; allowed: {list(ENGINES)}")
        if not isinstance(items, list):
            raise _fail(f"endpoints.{engine} must be a list, got {type(items).__name__}")
        for i, ep in enumerate(items or []):
            where = f"endpoints.{engine}[{i}]"
            if not isinstance(ep, Mapping):
                raise _fail(f"{where} must be a dict with host, api_base and model, got {ep!r}")
            for key in ("host", "api_base", "model"):
                if not isinstance(ep.get(key), str) or not ep[key]:
                    raise _fail(f"{where}: '{key}' is required (a non-empty string)")
            if not ep["api_base"].startswith(("http://", "https://")):
                raise _fail(f"{where}: api_base must start with http:// or https://, got {ep['api_base']!r}")
            context = ep.get("context")
            if context is not None and (
                isinstance(context, bool) or not isinstance(context, int) or context <= 0
            ):
                raise _fail(f"{where}: context must be a whole number of tokens > 0, got {context!r}")
        result[engine] = [dict(ep) for ep in items or []]
    return result


class _Builder:
    """Accumulates deployments, fallbacks, environment references and warnings."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings
        self.model_list: list[dict[str, Any]] = []
        self.warnings: list[str] = []
        self.env: dict[str, dict[str, Any]] = {}
        self.context: dict[str, int] = {}
        self.groups: dict[str, dict[str, Any]] = {}
        self._ids: set[str] = set()

    def _unique_id(self, base: str) -> str:
        candidate, n = base, 1
        while candidate in self._ids:
            n += 1
            candidate = f"{base}.{n}"
        self._ids.add(candidate)
        return candidate

    def deploy(
        self,
        group: str,
        entry: dict[str, Any],
        params: dict[str, Any],
        id_base: str,
        engine: str = "",
        context: int | None = None,
    ) -> None:
        # A group's context window is the smallest of its deployments' (and the catalog's, if set).
        for tokens in (context, entry.get("context_window")):
            if tokens is not None:
                self.context[group] = min(tokens, self.context.get(group, tokens))
        timeout_key = "local_stream_timeout" if entry["tier"] == "local" else "stream_timeout"
        params = {**params, "stream_timeout": self.settings[timeout_key]}
        for key in ("rpm", "tpm"):
            if entry.get(key) is not None:
                params[key] = entry[key]
        info: dict[str, Any] = {"id": self._unique_id(id_base)}
        if engine:
            # What the engine guard (aiswarm.gateway.guard) probes and keeps out of rotation when hung.
            info["aiswarm_engine"] = engine
        prices = {
            key: entry[key]
            for key in ("input_cost_per_token", "output_cost_per_token")
            if entry.get(key) is not None
        }
        info.update(prices)
        self.groups.setdefault(group, {"tier": entry["tier"], **prices, "models": []})
        if params["model"] not in self.groups[group]["models"]:
            self.groups[group]["models"].append(params["model"])
        self.model_list.append({"model_name": group, "litellm_params": params, "model_info": info})

    def local_key(self, endpoint: dict[str, Any], where: str) -> str:
        if endpoint.get("api_key_env"):
            return _env_ref(endpoint["api_key_env"], f"{where}.api_key_env")
        if self.settings["local_api_key_env"]:
            return _env_ref(self.settings["local_api_key_env"], "settings.local_api_key_env")
        return NO_KEY_PLACEHOLDER

    def provider_keys(self, provider: str) -> list[int]:
        """Indices of the non-empty keys of `provider` (empty or missing keys are dropped)."""
        conf = self.settings["providers"].get(provider) or {}
        if not isinstance(conf, Mapping):
            raise _fail(
                f"settings.providers.{provider} must be a dict with api_keys, got {type(conf).__name__}"
            )
        keys = conf.get("api_keys") or []
        if not isinstance(keys, list):
            raise _fail(f"settings.providers.{provider}.api_keys must be a list of keys, not a single string")
        return [i for i, key in enumerate(keys) if isinstance(key, str) and key.strip()]


def _local_group(
    b: _Builder, entry: dict[str, Any], endpoints: dict[str, list[dict[str, Any]]]
) -> list[str] | None:
    """Deployments of a local group; its local fallback groups, or None when it has no endpoint."""
    name = entry["name"]
    served: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for engine in entry["engines"]:
        served[engine] = [
            (i, ep) for i, ep in enumerate(endpoints.get(engine, [])) if ep.get("group", ep["model"]) == name
        ]
    primary = served.get("vllm", [])
    secondary = served.get("llamacpp", [])
    if not primary and not secondary:
        b.warnings.append(
            f"local model group '{name}' has no vllm or llamacpp endpoint; it gets no deployment"
        )
        return None
    # With vLLM hosts, llama.cpp hosts become '<name>-fallback'; without any (the lab case),
    # llama.cpp serves '<name>' itself.
    plan = [("vllm", name, primary), ("llamacpp", f"{name}-fallback" if primary else name, secondary)]
    for engine, group, items in plan:
        for i, ep in items:
            params = {
                "model": f"{ENGINE_PREFIX[engine]}/{ep['model']}",
                "api_base": ep["api_base"],
                "api_key": b.local_key(ep, f"endpoints.{engine}[{i}]"),
            }
            b.deploy(group, entry, params, f"{group}.{engine}.{ep['host']}", engine, ep.get("context"))
    return [f"{name}-fallback"] if primary and secondary else []


def _cloud_group(b: _Builder, entry: dict[str, Any]) -> bool:
    """Deployments of a cloud group, one per configured key; False when it has no key."""
    provider = entry["provider"]
    indices = b.provider_keys(provider)
    if not indices:
        b.warnings.append(
            f"model group '{entry['name']}' (tier {entry['tier']}) dropped: no API key for provider "
            f"'{provider}' in settings.providers.{provider}.api_keys"
        )
        return False
    conf = b.settings["providers"].get(provider) or {}
    for i in indices:
        var = env_var_for_key(provider, i)
        b.env[var] = {"provider": provider, "index": i}
        params = {"model": entry["model"], "api_key": _env_ref(var, var)}
        if conf.get("api_base"):
            params["api_base"] = conf["api_base"]
        b.deploy(entry["name"], entry, params, f"{entry['name']}.{provider}.key{i}")
    return True


# LiteLLM's CachingSupportedCallTypes (litellm/types/caching.py, 1.108.7).
CACHE_CALL_TYPES = (
    "completion", "acompletion", "embedding", "aembedding", "atranscription", "transcription",
    "atext_completion", "text_completion", "arerank", "rerank", "responses", "aresponses",
    "anthropic_messages", "aanthropic_messages",
)  # fmt: skip
# What the response cache stores unless settings.redis.cache_call_types says otherwise: embeddings
# and reranks, which are deterministic and asked again for the same text. Not chat: a sampled
# answer is not the answer to the next identical prompt, and storing every streamed answer cost
# 14-21 % of the gateway's CPU at 50 streams (docs/benchmarks.md, issue 12) for no hits.
DEFAULT_CACHE_CALL_TYPES = ("embedding", "aembedding", "rerank", "arerank")


def _cache_call_types(redis: Mapping[str, Any]) -> list[str]:
    kinds = redis.get("cache_call_types", DEFAULT_CACHE_CALL_TYPES)
    if isinstance(kinds, str) or not isinstance(kinds, (list, tuple)):
        raise _fail(f"settings.redis.cache_call_types must be a list of LiteLLM call types, got {kinds!r}")
    unknown = [kind for kind in kinds if kind not in CACHE_CALL_TYPES]
    if unknown:
        raise _fail(
            f"settings.redis.cache_call_types has unknown call type(s) {unknown}; "
            f"expected some of {', '.join(CACHE_CALL_TYPES)}"
        )
    return list(dict.fromkeys(kinds))


def _redis(settings: dict[str, Any]) -> dict[str, Any] | None:
    redis = settings["redis"]
    if not redis:
        return None
    if not isinstance(redis, Mapping) or not redis.get("host"):
        raise _fail("settings.redis must be a dict with host, port and optional password_env")
    port = redis.get("port", 6379)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise _fail(f"settings.redis.port must be a TCP port number, got {port!r}")
    password = (
        _env_ref(redis["password_env"], "settings.redis.password_env") if redis.get("password_env") else None
    )
    return {
        "host": redis["host"], "port": port, "password": password, "call_types": _cache_call_types(redis),
    }  # fmt: skip


def litellm_config(catalog: Any, endpoints: Any, settings: Any = None) -> dict[str, Any]:
    """Build the LiteLLM proxy config.yaml data from the catalog and the inference endpoints.

    Returns ``{"config": <config.yaml dict>, "warnings": [str], "env": {VAR: ref}, "context_windows":
    {group: tokens}, "groups": {group: {tier[, input_cost_per_token][, output_cost_per_token]}}}``,
    where ``ref`` is ``{provider, index}`` for a provider key and ``{engine, host}`` for an engine
    key, a group's context window is the smallest of its endpoints' ``context`` and its catalog
    ``context_window`` (groups with neither are left out), and ``groups`` holds the catalog tier and
    prices of every group that got a deployment (a ``-fallback`` group has its local entry's), which
    the spend guard (``aiswarm.router.spend``) prices calls with.

    - Each ``local`` group gets one deployment per vLLM endpoint serving it (LiteLLM balances
      across them); llama.cpp endpoints form ``<name>-fallback``. Without any vLLM endpoint (the
      lab without vLLM), the llama.cpp endpoints serve ``<name>`` directly. An endpoint serves
      the group named by its ``group`` key, else by its served ``model`` name.
    - Cloud groups (premium, free, specialized) get one deployment per configured key of their
      provider (two Gemini keys: two deployments, rotated by the router). Groups whose provider
      has no key are dropped with a warning.
    - Keys are never inlined: ``api_key`` is ``os.environ/AISWARM_<PROVIDER>_API_KEY_<i>`` and
      ``env`` maps each such variable to the provider and index in
      ``settings.providers.<provider>.api_keys`` so the role can write an EnvironmentFile; each
      endpoint's ``api_key_env`` maps to its engine and host (the key is that host's ``<engine>_api_key``).
    - Fallbacks of a local group: its ``-fallback`` group, then the kept cloud groups whose tier
      is in ``settings.fallback_tiers`` (tier order, then catalog order).
    """
    conf = _settings(settings)
    entries = _catalog(catalog)
    eps = _endpoints(endpoints)
    b = _Builder(conf)

    local_fallbacks: dict[str, list[str]] = {}
    kept_cloud: list[dict[str, Any]] = []
    for entry in entries:
        if entry["tier"] == "local":
            chain = _local_group(b, entry, eps)
            if chain is not None:
                local_fallbacks[entry["name"]] = chain
        elif _cloud_group(b, entry):
            kept_cloud.append(entry)

    local_names = {e["name"] for e in entries if e["tier"] == "local"}
    for engine, items in eps.items():
        for i, ep in enumerate(items):
            group = ep.get("group", ep["model"])
            engines = next((e["engines"] for e in entries if e["name"] == group and e["tier"] == "local"), [])
            if group not in local_names or engine not in engines:
                b.warnings.append(
                    f"endpoints.{engine}[{i}] (host {ep['host']}) serves '{group}', which no local catalog "
                    f"entry with engine {engine} names; it was left out"
                )

    # Engine keys after the provider keys, in endpoint order; the role resolves them from the host.
    for engine, items in eps.items():
        for ep in items:
            if ep.get("api_key_env"):
                b.env[ep["api_key_env"]] = {"engine": engine, "host": ep["host"]}

    cloud_order = [e["name"] for t in conf["fallback_tiers"] for e in kept_cloud if e["tier"] == t]
    fallbacks = [
        {name: chain + cloud_order} for name, chain in local_fallbacks.items() if chain + cloud_order
    ]

    redis = _redis(conf)
    router: dict[str, Any] = {
        "routing_strategy": conf["routing_strategy"],
        "num_retries": conf["num_retries"],
        "timeout": conf["timeout"],
        "allowed_fails": conf["allowed_fails"],
        # LiteLLM 1.108.7 treats allowed_fails equal to its own default (3) as "not set" and then
        # never cools down a deployment that is alone in its group (unless 1000 requests a minute
        # all fail), so a hung engine would hold every request for its stream_timeout. An explicit
        # policy turns the counting on: after allowed_fails timeouts in a minute it is out for
        # cooldown_time.
        "allowed_fails_policy": {"TimeoutErrorAllowedFails": conf["allowed_fails"]},
        "cooldown_time": conf["cooldown_time"],
        "fallbacks": fallbacks,
        # Fallbacks are for engine failures. A 400 the engine gives because of the request (invalid
        # parameters) goes back to the client (router_utils/fallback_event_handlers.py,
        # is_bad_request_without_fallback), and so does a context overflow: every group gets a
        # context-window chain, empty unless settings.context_window_fallbacks names larger-context
        # groups. LiteLLM reads an empty list as "not set" and then uses the generic fallbacks,
        # hence one entry per group.
        "fallback_on_unsupported_params": False,
        "context_window_fallbacks": [
            {name: list(conf["context_window_fallbacks"].get(name, []))}
            for name in dict.fromkeys(m["model_name"] for m in b.model_list)
        ],
    }
    # A local group with somewhere to fall back to does not retry its own engines: LiteLLM never
    # cools a deployment down for a refused connection (APIConnectionError), so every retry of a
    # dead engine would be paid again by every request. Its fallback chain is the retry. The
    # same holds for a local group inside a chain with more after it (swarm-chat-fallback before
    # the cloud tiers): with both engines down, its retries of a group with no deployment left
    # cost each request about 5 s before the cloud tier was tried (seen in the lab).
    # A cloud group with one deployment (one key) anywhere in a chain, the last one included, does
    # not retry either: LiteLLM would ask the same key again after a back-off (seconds, or the
    # provider's Retry-After); with every tier out, those waits held each request for up to 57 s,
    # and the last group's alone still cost each failed request 4-5 s (lab). The chain, or the
    # client, is the retry. A group with several keys keeps its retries: each retry may draw
    # another key (the quota rotation, aiswarm.gateway.quota, makes sure it does).
    deployments = Counter(m["model_name"] for m in b.model_list)
    local = {name for name in deployments if b.groups.get(name, {}).get("tier") == "local"}
    not_retried = {
        name: conf["local_num_retries"] if name in local else 0
        for entry in fallbacks
        for group, chain in entry.items()
        for position, name in enumerate([group, *chain])
        if (name in local and position < len(chain)) or (name not in local and deployments[name] == 1)
    }
    if not_retried:
        router["model_group_retry_policy"] = {
            name: {"DefaultRetries": not_retried[name]} for name in sorted(not_retried)
        }
    litellm: dict[str, Any] = {
        "drop_params": True,
        "request_timeout": conf["timeout"],
        "callbacks": list(conf["callbacks"]),
    }
    if redis:
        router.update({"redis_host": redis["host"], "redis_port": redis["port"]})
        # Redis also carries the router's shared state (cooldowns, usage) whatever is cached.
        litellm["cache"] = bool(redis["call_types"])
        litellm["cache_params"] = {
            "type": "redis", "host": redis["host"], "port": redis["port"],
            "supported_call_types": redis["call_types"],
        }  # fmt: skip
        if redis["password"]:
            router["redis_password"] = redis["password"]
            litellm["cache_params"]["password"] = redis["password"]
    general: dict[str, Any] = {
        "master_key": _env_ref(conf["master_key_env"], "settings.master_key_env"),
        "background_health_checks": bool(conf["background_health_checks"]),
        "health_check_interval": conf["health_check_interval"],
    }
    if conf["database_url_env"]:
        general["database_url"] = _env_ref(conf["database_url_env"], "settings.database_url_env")

    config = {
        "model_list": b.model_list,
        "router_settings": router,
        "litellm_settings": litellm,
        "general_settings": general,
    }
    return {
        "config": config, "warnings": b.warnings, "env": b.env, "context_windows": b.context,
        "groups": b.groups,
    }  # fmt: skip


class FilterModule:
    """Gateway configuration filters."""

    def filters(self) -> dict[str, Any]:
        return {"litellm_config": litellm_config, "gateway_endpoints": gateway_endpoints}
