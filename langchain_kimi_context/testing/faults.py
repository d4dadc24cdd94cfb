"""Deterministic fault injection for the emulator.

A :class:`Fault` says WHAT goes wrong (each Moonshot 429 type, a 500, a slow reply, a
stream cut after ``k`` chunks, an overflow error, an empty reply); a rule says WHEN: at
chosen request numbers (1-based, counted per endpoint from the moment the rule is
added), or at a rate with a seed (a seeded RNG, so the same run fails the same way).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast, get_args

from langchain_kimi_context.testing.validation import EmulatorAPIError

__all__ = [
    "Fault",
    "FaultEndpoint",
    "FaultInjector",
    "FaultKind",
    "FaultRule",
    "parse_fault_directive",
]

FaultKind = Literal[
    "rate_limit",
    "overloaded",
    "quota",
    "server_error",
    "overflow",
    "empty",
    "slow",
    "cut",
    "content_filter",
    "permission_denied",
    "error",
]
FaultEndpoint = Literal["chat", "caching", "any"]
_KINDS: frozenset[str] = frozenset(get_args(FaultKind))
_ALIASES = {
    "429": "rate_limit",
    "rate_limit_reached_error": "rate_limit",
    "engine_overloaded_error": "overloaded",
    "overload": "overloaded",
    "exceeded_current_quota_error": "quota",
    "quota_exceeded": "quota",
    "500": "server_error",
    "server": "server_error",
    "cut_stream": "cut",
    "stream_cut": "cut",
    "delay": "slow",
    "empty_reply": "empty",
    "403": "permission_denied",
    "permission_denied_error": "permission_denied",
    "high_risk": "content_filter",
}


@dataclass(frozen=True)
class Fault:
    """One injected failure.

    Attributes:
        kind: ``rate_limit`` (429 ``rate_limit_reached_error`` + ``Retry-After``),
            ``overloaded`` (429 ``engine_overloaded_error``), ``quota`` (429
            ``exceeded_current_quota_error``), ``server_error`` (500), ``overflow``
            (400 model token limit), ``empty`` (200 with empty content), ``slow``
            (served normally after ``delay`` seconds), ``cut`` (connection closed after
            ``after_chunks`` SSE chunks; half the body for non-streaming requests),
            ``content_filter`` (400 ``content_filter`` "considered high risk"),
            ``permission_denied`` (403 ``permission_denied_error``), ``error`` (any
            ``status``/``error_type``/``message``, default 400 ``invalid_request_error``).
        retry_after: Seconds named in the rate-limit message and header.
        delay: Seconds to sleep before serving (``slow``; other kinds too if set).
        after_chunks: SSE chunks sent before a ``cut``.
        message: Overrides the default error message.
        status: Overrides the HTTP status of ``server_error`` and ``error``.
        error_type: Overrides ``error.type`` of ``server_error`` (e.g.
            ``"unexpected_output"``) and ``error``.

    Example:
        >>> Fault("rate_limit", retry_after=5).error().headers
        {'Retry-After': '5'}
    """

    kind: FaultKind
    retry_after: float = 1.0
    delay: float = 0.0
    after_chunks: int = 2
    message: str | None = None
    status: int | None = None
    error_type: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            msg = f"Unknown fault kind {self.kind!r}; expected one of {sorted(_KINDS)}"
            raise ValueError(msg)

    def error(
        self, *, window: int = 262_144, requested: int | None = None
    ) -> EmulatorAPIError | None:
        """Return the API error this fault produces, or ``None`` (slow/cut/empty).

        Args:
            window: Window named in an ``overflow`` message.
            requested: Requested tokens named in an ``overflow`` message.

        Returns:
            The error to send, if any.
        """
        if self.kind == "rate_limit":
            secs = f"{self.retry_after:g}"
            return EmulatorAPIError(
                429,
                "rate_limit_reached_error",
                self.message
                or (
                    "Your account org-emulator<ak-emulator> request reached organization "
                    f"max RPM: 3, please try again after {secs} seconds"
                ),
                headers={"Retry-After": secs},
            )
        if self.kind == "overloaded":
            return EmulatorAPIError(
                429,
                "engine_overloaded_error",
                self.message or "The engine is currently overloaded, please try again later",
            )
        if self.kind == "quota":
            return EmulatorAPIError(
                429,
                "exceeded_current_quota_error",
                self.message
                or (
                    "Your account org-emulator<ak-emulator> is suspended, please check your "
                    "plan and billing details"
                ),
            )
        if self.kind == "server_error":
            return EmulatorAPIError(
                self.status or 500,
                self.error_type or "server_error",
                self.message or "The server had an error while processing your request",
            )
        if self.kind == "content_filter":
            return EmulatorAPIError(
                400,
                "content_filter",
                self.message or "The request was rejected because it was considered high risk",
            )
        if self.kind == "permission_denied":
            return EmulatorAPIError(
                403,
                "permission_denied_error",
                self.message or "The API you are accessing is not open to your account or model",
            )
        if self.kind == "error":
            return EmulatorAPIError(
                self.status or 400,
                self.error_type or "invalid_request_error",
                self.message or "Invalid request: injected error",
            )
        if self.kind == "overflow":
            asked = requested if requested is not None else window + 1
            return EmulatorAPIError(
                400,
                "invalid_request_error",
                self.message
                or (
                    "Invalid request: Your request exceeded model token limit: "
                    f"{window} (requested: {asked})"
                ),
            )
        return None

    def to_dict(self) -> dict[str, Any]:
        """Return the fault as a JSON-compatible dict (admin endpoint format).

        Returns:
            The fields.
        """
        return {
            "kind": self.kind,
            "retry_after": self.retry_after,
            "delay": self.delay,
            "after_chunks": self.after_chunks,
            "message": self.message,
            "status": self.status,
            "error_type": self.error_type,
        }


def _kind(name: str) -> FaultKind:
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _KINDS:
        msg = f"Unknown fault kind {name!r}; expected one of {sorted(_KINDS)}"
        raise ValueError(msg)
    return cast(FaultKind, key)


def parse_fault_directive(spec: str) -> tuple[Fault, int]:
    """Parse the arguments of an ``@fail`` directive.

    ``<kind> [number] [x<count>]``: the number is ``retry_after`` for ``rate_limit``,
    seconds for ``slow``, chunks for ``cut``; ``x<count>`` fails that many times.

    Args:
        spec: E.g. ``"rate_limit 2"``, ``"cut 3"``, ``"server_error x2"``.

    Returns:
        ``(fault, count)``.

    Raises:
        ValueError: For an unknown kind or malformed number.

    Example:
        >>> parse_fault_directive("cut 3 x2")
        (Fault(kind='cut', retry_after=1.0, delay=0.0, after_chunks=3, message=None, status=None, error_type=None), 2)
    """  # noqa: E501
    parts = spec.split()
    if not parts:
        msg = "@fail needs a fault kind, e.g. '@fail rate_limit 2'"
        raise ValueError(msg)
    kind = _kind(parts[0])
    count = 1
    number: float | None = None
    for part in parts[1:]:
        if part.lower().startswith("x") and part[1:].isdigit():
            count = int(part[1:])
        else:
            try:
                number = float(part)
            except ValueError as exc:
                msg = f"@fail {spec!r}: {part!r} is not a number"
                raise ValueError(msg) from exc
    if kind == "rate_limit":
        fault = Fault(kind, retry_after=number if number is not None else 1.0)
    elif kind == "slow":
        fault = Fault(kind, delay=number if number is not None else 1.0)
    elif kind == "cut":
        fault = Fault(kind, after_chunks=int(number) if number is not None else 2)
    else:
        fault = Fault(kind)
    return fault, count


@dataclass
class FaultRule:
    """When a fault fires.

    Attributes:
        fault: The fault.
        at: 1-based request numbers (counted per endpoint from when the rule was added).
        rate: Probability per request (with ``seed``), instead of ``at``.
        seed: RNG seed for ``rate``.
        times: Maximum number of firings (``None`` = unlimited for ``rate``,
            ``len(at)`` for ``at``).
        endpoint: ``"chat"``, ``"caching"`` or ``"any"``.
        fired: How many times it fired.

    Example:
        >>> FaultRule(Fault("overloaded"), at=frozenset({1})).times
        1
    """

    fault: Fault
    at: frozenset[int] | None = None
    rate: float | None = None
    seed: int = 0
    times: int | None = None
    endpoint: FaultEndpoint = "chat"
    fired: int = 0
    _start: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        if self.rate is not None and not 0.0 <= self.rate <= 1.0:
            msg = f"rate must be in [0, 1], got {self.rate}"
            raise ValueError(msg)
        if self.at is None and self.rate is None:
            self.at = frozenset({1})
        if self.at is not None and self.times is None:
            self.times = len(self.at)
        self._rng = random.Random(self.seed)

    def matches(self, endpoint: str, number: int) -> bool:
        """Return whether the rule fires for request ``number`` of ``endpoint``.

        Args:
            endpoint: The endpoint class of the request.
            number: The absolute request number of that endpoint.

        Returns:
            Whether it fires (the caller then records the firing).
        """
        if self.endpoint != "any" and self.endpoint != endpoint:
            return False
        if self.times is not None and self.fired >= self.times:
            return False
        relative = number - self._start
        if self.at is not None:
            return relative in self.at
        assert self.rate is not None
        return self._rng.random() < self.rate


class FaultInjector:
    """Scripted faults for an emulator (``emu.faults``); thread-safe.

    Example:
        >>> inj = FaultInjector()
        >>> _ = inj.server_error(rate=0.5, seed=7)
        >>> pattern = [bool(inj.next_fault("chat")) for _ in range(8)]
        >>> inj2 = FaultInjector()
        >>> _ = inj2.server_error(rate=0.5, seed=7)
        >>> pattern == [bool(inj2.next_fault("chat")) for _ in range(8)]
        True
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._counts: dict[str, int] = {"chat": 0, "caching": 0}
        self.history: list[tuple[str, int, str]] = []

    def add(
        self,
        fault: Fault,
        *,
        at: int | Iterable[int] | None = None,
        rate: float | None = None,
        seed: int = 0,
        times: int | None = None,
        endpoint: FaultEndpoint = "chat",
    ) -> FaultRule:
        """Schedule ``fault``.

        Args:
            fault: What goes wrong.
            at: Request number(s), 1-based, counted from now on ``endpoint``
                (default: the next request).
            rate: Instead of ``at``: the probability per request (seeded).
            seed: Seed of the RNG for ``rate``.
            times: Maximum firings.
            endpoint: ``"chat"`` (chat completions), ``"caching"`` (``/v1/caching``) or
                ``"any"``.

        Returns:
            The rule (its ``fired`` counter is live).
        """
        if at is not None and rate is not None:
            msg = "give either at= or rate=, not both"
            raise ValueError(msg)
        at_set = frozenset([at] if isinstance(at, int) else at) if at is not None else None
        if at_set is not None and any(n < 1 for n in at_set):
            msg = "request numbers in at= are 1-based"
            raise ValueError(msg)
        with self._lock:
            start = (
                sum(self._counts.values()) if endpoint == "any" else self._counts.get(endpoint, 0)
            )
            rule = FaultRule(fault, at=at_set, rate=rate, seed=seed, times=times, endpoint=endpoint)
            rule._start = start
            self._rules.append(rule)
        return rule

    def rate_limit(self, *, retry_after: float = 1.0, **when: Any) -> FaultRule:
        """429 ``rate_limit_reached_error`` with ``Retry-After`` (see :meth:`add`).

        Args:
            retry_after: Seconds in the message and the header.
            **when: ``at``/``rate``/``seed``/``times``/``endpoint``.

        Returns:
            The rule.
        """
        return self.add(Fault("rate_limit", retry_after=retry_after), **when)

    def overloaded(self, **when: Any) -> FaultRule:
        """429 ``engine_overloaded_error`` (see :meth:`add`).

        Args:
            **when: ``at``/``rate``/``seed``/``times``/``endpoint``.

        Returns:
            The rule.
        """
        return self.add(Fault("overloaded"), **when)

    def quota_exceeded(self, **when: Any) -> FaultRule:
        """429 ``exceeded_current_quota_error`` (not retryable) (see :meth:`add`).

        Args:
            **when: ``at``/``rate``/``seed``/``times``/``endpoint``.

        Returns:
            The rule.
        """
        return self.add(Fault("quota"), **when)

    def server_error(self, *, status: int = 500, **when: Any) -> FaultRule:
        """5xx ``server_error`` (see :meth:`add`).

        Args:
            status: HTTP status (500 by default).
            **when: ``at``/``rate``/``seed``/``times``/``endpoint``.

        Returns:
            The rule.
        """
        return self.add(Fault("server_error", status=status), **when)

    def overflow(self, **when: Any) -> FaultRule:
        """400 context overflow (``exceeded model token limit``) (see :meth:`add`).

        Args:
            **when: ``at``/``rate``/``seed``/``times``/``endpoint``.

        Returns:
            The rule.
        """
        return self.add(Fault("overflow"), **when)

    def empty_reply(self, **when: Any) -> FaultRule:
        """200 with empty content and no tool calls (see :meth:`add`).

        Args:
            **when: ``at``/``rate``/``seed``/``times``/``endpoint``.

        Returns:
            The rule.
        """
        return self.add(Fault("empty"), **when)

    def slow(self, delay: float, **when: Any) -> FaultRule:
        """Serve normally after sleeping ``delay`` seconds (see :meth:`add`).

        Args:
            delay: Seconds (real time) before the response starts.
            **when: ``at``/``rate``/``seed``/``times``/``endpoint``.

        Returns:
            The rule.
        """
        return self.add(Fault("slow", delay=delay), **when)

    def content_filter(self, **when: Any) -> FaultRule:
        """400 ``content_filter`` ("considered high risk"; not retryable) (see :meth:`add`).

        Args:
            **when: ``at``/``rate``/``seed``/``times``/``endpoint``.

        Returns:
            The rule.
        """
        return self.add(Fault("content_filter"), **when)

    def permission_denied(self, **when: Any) -> FaultRule:
        """403 ``permission_denied_error`` (not retryable) (see :meth:`add`).

        Args:
            **when: ``at``/``rate``/``seed``/``times``/``endpoint``.

        Returns:
            The rule.
        """
        return self.add(Fault("permission_denied"), **when)

    def error(
        self,
        status: int,
        error_type: str,
        message: str,
        **when: Any,
    ) -> FaultRule:
        """Any Moonshot-style error response (see :meth:`add`).

        Args:
            status: HTTP status.
            error_type: ``error.type``.
            message: ``error.message``.
            **when: ``at``/``rate``/``seed``/``times``/``endpoint``.

        Returns:
            The rule.
        """
        return self.add(
            Fault("error", status=status, error_type=error_type, message=message), **when
        )

    def cut_stream(self, after_chunks: int = 2, **when: Any) -> FaultRule:
        """Close the connection after ``after_chunks`` SSE chunks (see :meth:`add`).

        Args:
            after_chunks: Chunks sent before the cut.
            **when: ``at``/``rate``/``seed``/``times``/``endpoint``.

        Returns:
            The rule.
        """
        return self.add(Fault("cut", after_chunks=after_chunks), **when)

    def add_from_dict(self, spec: Mapping[str, Any]) -> FaultRule:
        """Schedule a fault described by a JSON object (admin endpoint format).

        Args:
            spec: ``{"kind": ..., "at": n | [n, ...], "rate": p, "seed": s, "times": t,
                "endpoint": e, "retry_after": T, "delay": d, "after_chunks": k,
                "message": m, "status": code, "error_type": t}``.

        Returns:
            The rule.
        """
        fault_fields = {
            k: spec[k]
            for k in ("retry_after", "delay", "after_chunks", "message", "status", "error_type")
            if spec.get(k) is not None
        }
        fault = Fault(_kind(str(spec.get("kind", ""))), **fault_fields)
        endpoint = str(spec.get("endpoint", "chat"))
        if endpoint not in ("chat", "caching", "any"):
            msg = f"endpoint must be chat, caching or any, got {endpoint!r}"
            raise ValueError(msg)
        return self.add(
            fault,
            at=spec.get("at"),
            rate=spec.get("rate"),
            seed=int(spec.get("seed", 0)),
            times=spec.get("times"),
            endpoint=cast(FaultEndpoint, endpoint),
        )

    def next_fault(self, endpoint: Literal["chat", "caching"]) -> Fault | None:
        """Count one request on ``endpoint`` and return the fault to apply, if any.

        Args:
            endpoint: ``"chat"`` or ``"caching"``.

        Returns:
            The first matching fault, or ``None``.
        """
        with self._lock:
            self._counts[endpoint] = self._counts.get(endpoint, 0) + 1
            number = self._counts[endpoint]
            total = sum(self._counts.values())
            for rule in self._rules:
                n = total if rule.endpoint == "any" else number
                if rule.matches(endpoint, n):
                    rule.fired += 1
                    self.history.append((endpoint, number, rule.fault.kind))
                    return rule.fault
        return None

    @property
    def rules(self) -> list[FaultRule]:
        """The scheduled rules (copies of the list, live rule objects)."""
        with self._lock:
            return list(self._rules)

    def clear(self) -> None:
        """Remove every rule and the firing history (request counters keep counting)."""
        with self._lock:
            self._rules.clear()
            self.history.clear()
