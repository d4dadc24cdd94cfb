"""Kimi model profiles as data: windows, output limits, prices, lifecycle, thinking rules.

Every number and rule here is data that users can override (``register_profile`` or the
``profile_overrides`` argument of :class:`~langchain_kimi_context.KimiChatModel`), and
windows can be refreshed from the server's ``GET /v1/models`` (``context_length``).
Nothing else in the package hard-codes a model name, a window, a price or a thinking rule.

Lifecycle: a profile is ``"current"`` (served by Moonshot today), ``"retired"`` (Moonshot
answers 404; ``retired_on`` and ``replacement`` say when and what to use instead; third-party
hosts may still serve it) or ``"unknown"`` (a guess for an id the package has no data for).

Sources (every rule is listed with its public evidence in ``docs/kimi-api-rules.md``):
Moonshot's model, pricing and thinking-mode pages as quoted by other clients' catalog
changes (e.g. llmgateway PR #3378, coder/xum PR #3737, cline PR #11109, opencode-kimi-full
PR #11), a live ``GET /v1/models`` listing of 2026-09-02 (kimi-k3, kimi-k2.7-code,
kimi-k2.7-code-highspeed, kimi-k2.6), and Moonshot's retirement notices (K2 previews, turbo
and thinking models on 2026-05-25; kimi-k2.5, moonshot-v1 and kimi-latest on 2026-08-31).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

CacheKind = Literal["automatic", "explicit", "none"]
ThinkingMode = Literal["always", "default_on", "off"]
Lifecycle = Literal["current", "retired", "unknown"]
ForcedToolChoice = Literal["required", "named"]

DEFAULT_MODEL = "kimi-k2.6"
"""The model used when none is given: Moonshot's current general model with the lowest
price (kimi-k3 costs about three times as much per token)."""

DEFAULT_CONTEXT_WINDOW = 262_144
"""Window assumed for a model that no profile and no server metadata describes."""


@dataclass(frozen=True, kw_only=True)
class Pricing:
    """Token prices per one million tokens.

    Attributes:
        currency: ISO currency code of every amount in this object.
        input_cache_hit: Price of a prompt token served from the context cache.
        input_cache_miss: Price of a prompt token not served from the cache.
        output: Price of a completion (including reasoning) token.
        web_search_call: Fee of one builtin ``$web_search`` call (not per token).

    Example:
        >>> p = Pricing(currency="USD", input_cache_hit=0.15, input_cache_miss=0.6, output=2.5)
        >>> round(p.cost(prompt_tokens=1_000_000, cached_tokens=500_000, output_tokens=0), 3)
        0.375
    """

    currency: str
    input_cache_hit: float
    input_cache_miss: float
    output: float
    web_search_call: float = 0.0

    def cost(self, *, prompt_tokens: int, cached_tokens: int, output_tokens: int) -> float:
        """Return the cost of one call.

        Args:
            prompt_tokens: All prompt tokens of the call (hits and misses).
            cached_tokens: The prompt tokens served from the cache.
            output_tokens: Completion tokens, reasoning included.

        Returns:
            The cost in ``currency``.
        """
        cached = max(0, min(cached_tokens, prompt_tokens))
        missed = prompt_tokens - cached
        return (
            cached * self.input_cache_hit
            + missed * self.input_cache_miss
            + output_tokens * self.output
        ) / 1_000_000


@dataclass(frozen=True, kw_only=True)
class ExplicitCachePricing:
    """Prices of Moonshot's explicit Context Caching API (moonshot-v1 models).

    Attributes:
        currency: ISO currency code of every amount in this object.
        creation_per_m: Price per one million tokens put into a new cache.
        storage_per_m_per_minute: Price per one million cached tokens per minute stored.
        per_hit_call: Price of each request that uses the cache.
    """

    currency: str = "CNY"
    creation_per_m: float = 24.0
    storage_per_m_per_minute: float = 5.0
    per_hit_call: float = 0.02


@dataclass(frozen=True, kw_only=True)
class KimiModelProfile:
    """Everything the package needs to know about one Kimi model.

    Attributes:
        name: The model id sent as ``model`` in requests.
        context_window: Input + output token limit of the model.
        max_output_tokens: Largest ``max_tokens`` the model accepts.
        default_max_tokens: ``max_tokens`` sent when the caller sets none (the server's
            own default is small, about 1024).
        pricing: Token prices.
        cache_kind: ``"automatic"`` prefix caching (kimi-k2+), ``"explicit"`` Context
            Caching API (moonshot-v1), or ``"none"``.
        cache_family: Model family name the explicit cache API expects (``"moonshot-v1"``).
        explicit_cache_pricing: Prices of the explicit cache API, when it applies.
        thinking: ``"always"`` (thinking models), ``"default_on"`` (thinking unless
            disabled with ``extra_body={"thinking": {"type": "disabled"}}``) or ``"off"``.
        default_temperature: The server's default temperature for the model.
        fixed_params: Sampling parameters the model fixes; other values are rejected.
        fixed_params_thinking_off: The fixed values when thinking is disabled on a
            ``"default_on"`` model (k2.5/k2.6 fix temperature 0.6 instead of 1.0); empty
            means the same as ``fixed_params``.
        supports_tool_calling: Whether the model accepts ``tools``.
        source: Where the numbers came from (``"builtin"``, ``"user"``, ``"/v1/models"``,
            ``"guessed from <model>"``, ``"default"``).
        lifecycle: ``"current"``, ``"retired"`` or ``"unknown"`` (see the module docstring).
        retired_on: ISO date Moonshot retired the model (``None`` unless retired).
        replacement: The current model to use instead of a retired one.
        thinking_switch: Whether the model takes the ``thinking`` request field
            (``{"type": "enabled"|"disabled"}``); models that always reason and are tuned
            with ``reasoning_effort`` (kimi-k3) must not get it.
        reasoning_efforts: Accepted values of the top-level ``reasoning_effort`` field
            (empty: the field is not sent).
        forced_tool_choice_with_thinking: Forced ``tool_choice`` forms the model accepts
            while thinking: ``"required"`` (any tool) and/or ``"named"`` (one function).
            The others are answered with 400 "tool_choice ... is incompatible with
            thinking enabled".
        web_search_with_thinking: Whether the builtin ``$web_search`` works while thinking.
        reasoning_effort_default: The server's ``reasoning_effort`` when none is sent.
        json_schema_output: Whether ``response_format: json_schema`` is relied on for
            structured output (LangChain's ``structured_output`` profile key, which
            ``create_agent`` reads to pick its provider strategy).

    Example:
        >>> p = get_profile("kimi-k2.6")
        >>> p.context_window, p.cache_kind, p.lifecycle
        (262144, 'automatic', 'current')
        >>> r = get_profile("kimi-k2.5")
        >>> r.lifecycle, r.retired_on, r.replacement
        ('retired', '2026-08-31', 'kimi-k2.6')
    """

    name: str
    context_window: int
    max_output_tokens: int = 32_768
    default_max_tokens: int = 8_192
    pricing: Pricing
    cache_kind: CacheKind = "automatic"
    cache_family: str | None = None
    explicit_cache_pricing: ExplicitCachePricing | None = None
    thinking: ThinkingMode = "off"
    default_temperature: float = 0.6
    fixed_params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    fixed_params_thinking_off: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({})
    )
    supports_tool_calling: bool = True
    source: str = "builtin"
    lifecycle: Lifecycle = "current"
    retired_on: str | None = None
    replacement: str | None = None
    thinking_switch: bool = True
    reasoning_efforts: tuple[str, ...] = ()
    forced_tool_choice_with_thinking: frozenset[ForcedToolChoice] = frozenset()
    web_search_with_thinking: bool = False
    reasoning_effort_default: str | None = None
    json_schema_output: bool = False

    @property
    def is_guess(self) -> bool:
        """Whether the profile is a guess for an id the package has no data for."""
        return self.source == "default" or self.source.startswith("guessed")

    def retirement_notice(self) -> str:
        """Return one sentence saying the model was retired, when, and what to use.

        Returns:
            The notice (empty for a model that is not retired).
        """
        if self.lifecycle != "retired":
            return ""
        use = f" Use {self.replacement!r} instead" if self.replacement else ""
        return (
            f"Moonshot retired {self.name} on {self.retired_on or 'an earlier date'} (its "
            f"API answers 404 for it).{use} (KimiChatModel(model=...)); third-party hosts "
            f"that still serve {self.name} work with their own base_url."
        )

    def fixed_params_for(self, *, thinking: bool) -> Mapping[str, Any]:
        """Return the sampling parameters the model fixes with thinking on or off.

        Args:
            thinking: Whether the request runs with thinking enabled.

        Returns:
            Parameter name -> the only accepted value.
        """
        if not thinking and self.fixed_params_thinking_off:
            return self.fixed_params_thinking_off
        return self.fixed_params

    def replace(self, **changes: Any) -> KimiModelProfile:
        """Return a copy with ``changes`` applied.

        Args:
            **changes: Field names and their new values.

        Returns:
            The new profile.
        """
        return dataclasses.replace(self, **changes)

    def to_langchain_profile(self) -> dict[str, Any]:
        """Return the profile as LangChain's ``ModelProfile`` dict (``model.profile``).

        ``max_input_tokens`` is what LangChain's own middleware (e.g.
        ``SummarizationMiddleware`` with a ``("fraction", f)`` trigger) reads.

        Returns:
            A dict with ``max_input_tokens``, ``max_output_tokens``, ``tool_calling``,
            ``reasoning_output`` and the Kimi-specific extras.
        """
        profile: dict[str, Any] = {
            "name": self.name,
            "max_input_tokens": self.context_window,
            "max_output_tokens": self.max_output_tokens,
            "text_inputs": True,
            "text_outputs": True,
            "tool_calling": self.supports_tool_calling,
            # a forced tool choice works unless the model always thinks and rejects it
            "tool_choice": self.supports_tool_calling
            and (self.thinking != "always" or bool(self.forced_tool_choice_with_thinking)),
            "structured_output": self.json_schema_output,
            "reasoning_output": self.thinking != "off",
            "temperature": "temperature" not in self.fixed_params,
            "kimi_cache_kind": self.cache_kind,
            "kimi_lifecycle": self.lifecycle,
        }
        if self.lifecycle != "unknown":
            profile["status"] = "active" if self.lifecycle == "current" else "retired"
        if self.reasoning_efforts:
            profile["reasoning_effort_levels"] = list(self.reasoning_efforts)
        if self.reasoning_effort_default:
            profile["reasoning_effort_default"] = self.reasoning_effort_default
        return profile


_K2_CLASSIC = Pricing(currency="USD", input_cache_hit=0.15, input_cache_miss=0.60, output=2.50)
_K2_TURBO = Pricing(currency="USD", input_cache_hit=0.15, input_cache_miss=1.15, output=8.00)
# Fixed sampling values of the thinking generations: temperature 1.0 with thinking and 0.6
# without, top_p 0.95, n 1; presence/frequency penalties "cannot be modified" (0). Any other
# value is a 400 (Moonshot's kimi-k2.6 page; cline PR #11109; big-AGI issue #1161 probed the
# same 400s on kimi-k3, whose values are assumed to be the thinking ones: strict).
_FIXED_THINKING = MappingProxyType(
    {"temperature": 1.0, "top_p": 0.95, "n": 1, "presence_penalty": 0.0, "frequency_penalty": 0.0}
)
_FIXED_NO_THINKING = MappingProxyType({**_FIXED_THINKING, "temperature": 0.6})
_FIXED_K25 = MappingProxyType({"temperature": 1.0, "top_p": 0.95, "n": 1})
_FIXED_K25_NO_THINKING = MappingProxyType({"temperature": 0.6, "top_p": 0.95, "n": 1})
# USD per builtin $web_search call (Moonshot's web-search pricing as quoted by clients).
_WEB_SEARCH_FEE = 0.004
# Output budget of thinking models: reasoning is billed and counted as output, so a small
# budget cuts long reasoning turns ("length"); Moonshot's own thinking examples use 32K.
_THINKING_MAX_TOKENS = 32_768
_RETIRED_K2_PREVIEWS = "2026-05-25"
_RETIRED_K25_V1 = "2026-08-31"


def _retired(
    profile: KimiModelProfile, on: str, replacement: str = DEFAULT_MODEL
) -> KimiModelProfile:
    return profile.replace(lifecycle="retired", retired_on=on, replacement=replacement)


def _v1(name: str, window: int, price_in: float, price_out: float) -> KimiModelProfile:
    return KimiModelProfile(
        name=name,
        context_window=window,
        max_output_tokens=min(window // 2, 16_384),
        default_max_tokens=min(window // 4, 4_096),
        pricing=Pricing(
            currency="USD",
            input_cache_hit=price_in,
            input_cache_miss=price_in,
            output=price_out,
        ),
        cache_kind="explicit",
        cache_family="moonshot-v1",
        explicit_cache_pricing=ExplicitCachePricing(),
        default_temperature=0.0,
        lifecycle="retired",
        retired_on=_RETIRED_K25_V1,
        replacement=DEFAULT_MODEL,
    )


def _usd(miss: float, hit: float, output: float) -> Pricing:
    return Pricing(
        currency="USD",
        input_cache_miss=miss,
        input_cache_hit=hit,
        output=output,
        web_search_call=_WEB_SEARCH_FEE,
    )


def _current(name: str, **fields: Any) -> KimiModelProfile:
    """A current thinking-generation model: the fields they share, then its own."""
    shared: dict[str, Any] = {
        "context_window": 262_144,
        "max_output_tokens": 65_536,
        "default_max_tokens": _THINKING_MAX_TOKENS,
        "default_temperature": 1.0,
        "fixed_params": _FIXED_THINKING,
    }
    return KimiModelProfile(name=name, **{**shared, **fields})


_K26_PRICES = _usd(0.95, 0.16, 4.00)

CURRENT_PROFILES: Mapping[str, KimiModelProfile] = MappingProxyType(
    {
        p.name: p
        for p in (
            # kimi-k3: 1,048,576 window, USD 3.00 / 0.30 / 15.00 flat, output up to 131,072
            # (coder/xum PR #3737, big-AGI #1161). Always reasons; depth is the top-level
            # reasoning_effort low/high/max, default max (llmgateway PR #3378; lobehub PR
            # #17272 saw only "max" accepted at launch); drop the thinking switch for it.
            # Forced tool_choice: "required" works while thinking, a named function is a
            # 400 (inspect_ai PR #5152, oh-my-pi PR #5994, big-AGI #1161).
            _current(
                "kimi-k3",
                context_window=1_048_576,
                max_output_tokens=131_072,
                pricing=_usd(3.00, 0.30, 15.00),
                thinking="always",
                thinking_switch=False,
                reasoning_efforts=("low", "high", "max"),
                reasoning_effort_default="max",
                forced_tool_choice_with_thinking=frozenset({"required"}),
                json_schema_output=True,  # strict json_schema verified (big-AGI #1161)
            ),
            # kimi-k2.6: 262,144 window, USD 0.95 / 0.16 / 4.00 (cline PR #11109, chatcli
            # PR #911); thinking on by default, switchable; forced tool_choice is a 400
            # while thinking (oh-my-pi #1077, inspect_ai PR #5152).
            _current(
                "kimi-k2.6",
                pricing=_K26_PRICES,
                thinking="default_on",
                fixed_params_thinking_off=_FIXED_NO_THINKING,
            ),
            # Coding models: always reason; the only accepted `thinking` value is
            # enabled+keep=all, so the package sends none (opencode-kimi-full PR #11 quoting
            # Moonshot's docs). Prices are not published: kimi-k2.6's are used until the
            # server or the user says otherwise. No forced tool choice while thinking, so
            # structured output goes through json_schema (not verified publicly: strict).
            *(
                _current(
                    name,
                    pricing=_K26_PRICES,
                    thinking="always",
                    thinking_switch=False,
                    json_schema_output=True,
                )
                for name in ("kimi-k2.7-code", "kimi-k2.7-code-highspeed")
            ),
        )
    }
)
"""The models Moonshot serves today (``GET /v1/models`` of 2026-09-02)."""

RETIRED_PROFILES: Mapping[str, KimiModelProfile] = MappingProxyType(
    {
        p.name: p
        for p in (
            _retired(
                KimiModelProfile(
                    name="kimi-k2-0905-preview", context_window=262_144, pricing=_K2_CLASSIC
                ),
                _RETIRED_K2_PREVIEWS,
            ),
            _retired(
                KimiModelProfile(
                    name="kimi-k2-0711-preview", context_window=131_072, pricing=_K2_CLASSIC
                ),
                _RETIRED_K2_PREVIEWS,
            ),
            _retired(
                KimiModelProfile(
                    name="kimi-k2-turbo-preview", context_window=262_144, pricing=_K2_TURBO
                ),
                _RETIRED_K2_PREVIEWS,
            ),
            *(
                _retired(
                    KimiModelProfile(
                        name=name,
                        context_window=262_144,
                        pricing=pricing,
                        thinking="always",
                        thinking_switch=False,
                        default_temperature=1.0,
                    ),
                    _RETIRED_K2_PREVIEWS,
                )
                for name, pricing in (
                    ("kimi-k2-thinking", _K2_CLASSIC),
                    ("kimi-k2-thinking-turbo", _K2_TURBO),
                )
            ),
            _retired(
                KimiModelProfile(
                    name="kimi-k2.5",
                    context_window=262_144,
                    pricing=Pricing(
                        currency="USD", input_cache_hit=0.10, input_cache_miss=0.60, output=3.00
                    ),
                    thinking="default_on",
                    default_temperature=1.0,
                    fixed_params=_FIXED_K25,
                    fixed_params_thinking_off=_FIXED_K25_NO_THINKING,
                ),
                _RETIRED_K25_V1,
            ),
            _retired(
                KimiModelProfile(name="kimi-latest", context_window=131_072, pricing=_K2_CLASSIC),
                _RETIRED_K25_V1,
            ),
            _v1("moonshot-v1-8k", 8_192, 0.20, 2.00),
            _v1("moonshot-v1-32k", 32_768, 1.00, 3.00),
            _v1("moonshot-v1-128k", 131_072, 2.00, 5.00),
        )
    }
)
"""Models Moonshot no longer serves, with ``retired_on`` and ``replacement``."""

BUILTIN_PROFILES: Mapping[str, KimiModelProfile] = MappingProxyType(
    {**RETIRED_PROFILES, **CURRENT_PROFILES}
)
"""Every profile the package ships: current and retired."""


_lock = threading.Lock()
_registry: dict[str, KimiModelProfile] = dict(BUILTIN_PROFILES)


def register_profile(profile: KimiModelProfile) -> None:
    """Add or replace a model profile for the whole process.

    Args:
        profile: The profile; ``profile.name`` is the model id it applies to.

    Example:
        >>> register_profile(get_profile("kimi-k2.6").replace(name="my-kimi", source="user"))
        >>> get_profile("my-kimi").context_window
        262144
    """
    with _lock:
        _registry[profile.name] = profile


def list_profiles() -> list[str]:
    """Return the model ids that have a profile.

    Returns:
        Sorted model ids.
    """
    with _lock:
        return sorted(_registry)


def _fallback_profile(model: str) -> KimiModelProfile:
    """Guess a profile for an unknown model from its family prefix."""
    with _lock:
        known = sorted(_registry.values(), key=lambda p: len(p.name), reverse=True)
    for candidate in known:
        family = candidate.name.rsplit("-", 1)[0] if candidate.name.count("-") > 1 else ""
        if family and model.startswith(family):
            return candidate.replace(
                name=model,
                source=f"guessed from {candidate.name}",
                lifecycle="unknown",
                retired_on=None,
                replacement=None,
            )
    return KimiModelProfile(
        name=model,
        context_window=DEFAULT_CONTEXT_WINDOW,
        pricing=_K2_CLASSIC,
        source="default",
        lifecycle="unknown",
    )


_learned: dict[str, int] = {}
"""Windows learned at run time (a server overflow error named them), by model id."""

LEARNED_SOURCE = "learned from server error"


def learn_context_window(model: str, window: int) -> bool:
    """Remember the real window of ``model`` for the whole process.

    This table is the one store of learned windows: :func:`get_profile` (and therefore
    every ``KimiChatModel``, the window guard and the compaction trigger) applies it.
    A window replaces a learned one only when it is smaller, and :func:`get_profile`
    applies it only where it is smaller than the profile's window (built-in data or
    ``profile_overrides``): a server error never makes the package assume more room
    than it had, and it lowers an override that promised more than the server allows.

    Args:
        model: The model id.
        window: The window the server named.

    Returns:
        Whether the store changed.

    Example:
        >>> learn_context_window("doc-model-32k", 32_768)
        True
        >>> get_profile("doc-model-32k").context_window, learned_context_window("doc-model-32k")
        (32768, 32768)
        >>> forget_learned_windows()
    """
    if not isinstance(window, int) or isinstance(window, bool) or window <= 0:
        return False
    with _lock:
        known = _learned.get(model)
        if known is not None and window >= known:
            return False
        _learned[model] = window
    return True


def learned_context_window(model: str) -> int | None:
    """Return the window learned for ``model`` from a server error, if any.

    Example:
        >>> learned_context_window("never-seen-model") is None
        True
    """
    with _lock:
        return _learned.get(model)


def forget_learned_windows() -> None:
    """Forget every learned window (for tests)."""
    with _lock:
        _learned.clear()


def get_profile(model: str, overrides: Mapping[str, Any] | None = None) -> KimiModelProfile:
    """Return the profile of ``model``, with optional per-call overrides.

    Unknown models get a profile guessed from the closest known family (or the package
    defaults); ``source`` says which.

    Args:
        model: Model id, e.g. ``"kimi-k2.6"``.
        overrides: Field values that replace the stored ones (e.g.
            ``{"context_window": 131072}``).

    Returns:
        The profile.

    Raises:
        TypeError: If ``overrides`` names a field that profiles do not have.

    Example:
        >>> get_profile("moonshot-v1-32k").cache_kind
        'explicit'
        >>> get_profile("kimi-k2.6", {"context_window": 100_000}).context_window
        100000
    """
    with _lock:
        profile = _registry.get(model)
    if profile is None:
        profile = _fallback_profile(model)
    if overrides:
        fields = {f.name for f in dataclasses.fields(KimiModelProfile)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            msg = f"Unknown model profile field(s) {unknown}; valid fields are {sorted(fields)}."
            raise TypeError(msg)
        profile = profile.replace(**dict(overrides), source="user")
    learned = learned_context_window(model)
    if learned is not None and learned < profile.context_window:
        profile = profile.replace(context_window=learned, source=LEARNED_SOURCE)
    return profile


def update_profiles_from_models_payload(
    payload: Mapping[str, Any] | Iterable[Mapping[str, Any]],
) -> list[KimiModelProfile]:
    """Refresh context windows from a ``GET /v1/models`` response body.

    Models the server lists but the package does not know get a profile guessed from
    their family with the server's ``context_length``.

    Args:
        payload: The decoded JSON body (``{"data": [...]}``) or its ``data`` list.

    Returns:
        The profiles that were registered or updated.
    """
    items = payload.get("data", []) if isinstance(payload, Mapping) else payload
    updated: list[KimiModelProfile] = []
    for item in items:
        model_id = item.get("id")
        window = item.get("context_length")
        if not isinstance(model_id, str) or not isinstance(window, int) or window <= 0:
            continue
        profile = get_profile(model_id).replace(context_window=window, source="/v1/models")
        register_profile(profile)
        updated.append(profile)
    return updated


def current_models() -> list[str]:
    """Return the ids of the models Moonshot serves today (per the registered profiles).

    Returns:
        Sorted model ids whose lifecycle is ``"current"``.

    Example:
        >>> current_models()
        ['kimi-k2.6', 'kimi-k2.7-code', 'kimi-k2.7-code-highspeed', 'kimi-k3']
    """
    with _lock:
        return sorted(n for n, p in _registry.items() if p.lifecycle == "current")


def retired_profile(model: str) -> KimiModelProfile | None:
    """Return the profile of ``model`` if the catalog knows it as retired.

    Args:
        model: Model id.

    Returns:
        The retired profile, or ``None`` (current, unknown or guessed models).
    """
    with _lock:
        profile = _registry.get(model)
    return profile if profile is not None and profile.lifecycle == "retired" else None
