"""Calibration against server usage: correction factors and the current context size.

Contract: :class:`TokenCalibrator` learns a per-session factor from the server-reported
``prompt_tokens`` versus the local estimate (bounded, smoothed);
:class:`ContextSizeTracker` reports the context size as "last server usage + calibrated
estimate of what was appended since", and serialises to and from JSON for checkpoints.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
)

from langchain_kimi_context.errors import KimiConfigurationError
from langchain_kimi_context.tokens.counter import TokenCounter, _as_messages
from langchain_kimi_context.tokens.default import default_token_counter


@dataclass
class TokenCalibrator:
    """Per-session correction factor: server-billed ``prompt_tokens`` / local estimate.

    The first observation sets the factor; later ones move it in log space by
    ``smoothing`` (an exponential moving average of the log ratio), and it is clamped to
    ``[min_factor, max_factor]`` so one odd reply cannot wreck the estimate.

    Attributes:
        factor: The current correction factor (1.0 before any observation).
        observations: Number of observations folded in.
        smoothing: Weight of a new observation (0 < smoothing <= 1).
        min_factor: Lower bound of the factor.
        max_factor: Upper bound of the factor.
        last_ratio: The last raw ratio observed (unclamped), for diagnostics.

    Example:
        >>> cal = TokenCalibrator()
        >>> cal.observe(estimated=1000, actual=1200)
        1.2
        >>> cal.apply(500)
        600
        >>> cal.observe(estimated=1000, actual=5000) <= cal.max_factor  # bounded, smoothed
        True
        >>> TokenCalibrator.from_dict(cal.to_dict()) == cal
        True
    """

    factor: float = 1.0
    observations: int = 0
    smoothing: float = 0.5
    min_factor: float = 0.5
    max_factor: float = 2.0
    last_ratio: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.smoothing <= 1.0:
            raise KimiConfigurationError(
                f"TokenCalibrator: smoothing must be in (0, 1], got {self.smoothing}."
            )
        if not 0.0 < self.min_factor <= 1.0 <= self.max_factor:
            raise KimiConfigurationError(
                "TokenCalibrator: need 0 < min_factor <= 1 <= max_factor, got "
                f"{self.min_factor}..{self.max_factor}."
            )
        self.factor = self._clamp(self.factor)

    def _clamp(self, value: float) -> float:
        return min(self.max_factor, max(self.min_factor, value))

    def observe(self, estimated: int, actual: int) -> float:
        """Fold in one (local estimate, server-reported prompt tokens) pair.

        Pairs where either side is not positive are ignored.

        Args:
            estimated: The uncalibrated local count of the prompt.
            actual: The server's ``prompt_tokens`` for that prompt.

        Returns:
            The new factor (rounded to 6 digits).
        """
        if estimated <= 0 or actual <= 0:
            return self.factor
        ratio = actual / estimated
        self.last_ratio = ratio
        clamped = self._clamp(ratio)
        if self.observations == 0:
            new = clamped
        else:
            log_new = (1 - self.smoothing) * math.log(self.factor) + self.smoothing * math.log(
                clamped
            )
            new = self._clamp(math.exp(log_new))
        self.factor = round(new, 6)
        self.observations += 1
        return self.factor

    def apply(self, estimated: int) -> int:
        """Return the calibrated value of a local estimate.

        Args:
            estimated: An uncalibrated local count.

        Returns:
            ``round(estimated * factor)``.
        """
        return round(estimated * self.factor)

    def to_dict(self) -> dict[str, Any]:
        """Serialise to a small JSON-compatible dict (for checkpoints).

        Returns:
            The state.
        """
        return {
            "factor": self.factor,
            "observations": self.observations,
            "smoothing": self.smoothing,
            "min_factor": self.min_factor,
            "max_factor": self.max_factor,
            "last_ratio": self.last_ratio,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TokenCalibrator:
        """Restore from :meth:`to_dict` output.

        Args:
            data: The serialised state.

        Returns:
            The calibrator.
        """
        return cls(
            factor=float(data.get("factor", 1.0)),
            observations=int(data.get("observations", 0)),
            smoothing=float(data.get("smoothing", 0.5)),
            min_factor=float(data.get("min_factor", 0.5)),
            max_factor=float(data.get("max_factor", 2.0)),
            last_ratio=(None if data.get("last_ratio") is None else float(data["last_ratio"])),
        )


@dataclass
class _Anchor:
    message_count: int
    prompt_tokens: int
    raw_messages: int
    raw_tools: int
    last_message_id: str | None


class ContextSizeTracker:
    """Current context size of one session: last server usage + calibrated delta.

    After each model call, :meth:`record_usage` (or :meth:`record_response`) stores the
    server-reported ``prompt_tokens`` for the messages sent and teaches the
    :class:`TokenCalibrator`. :meth:`current_size` then returns that exact number plus
    the calibrated local estimate of whatever was appended since (the reply, tool
    results, the next user turn). When the history was rewritten below the anchor
    (compaction, truncation), it returns the calibrated estimate of the whole request.

    Args:
        counter: The counter (default: :func:`default_token_counter`).
        calibrator: The per-session calibrator (default: a new one).

    Example:
        >>> from langchain_kimi_context.tokens import ApproximateBackend
        >>> from langchain_core.messages import AIMessage, HumanMessage
        >>> tracker = ContextSizeTracker(TokenCounter(backend=ApproximateBackend()))
        >>> history = [HumanMessage("Summarise the design doc.")]
        >>> tracker.record_usage(history, prompt_tokens=40)
        >>> history = history + [AIMessage("It proposes a cache."), HumanMessage("Why?")]
        >>> tracker.current_size(history) > 40
        True
        >>> restored = ContextSizeTracker.from_dict(tracker.to_dict(), tracker.counter)
        >>> restored.current_size(history) == tracker.current_size(history)
        True
    """

    def __init__(
        self,
        counter: TokenCounter | None = None,
        calibrator: TokenCalibrator | None = None,
    ) -> None:
        self.counter = counter if counter is not None else default_token_counter()
        self.calibrator = calibrator if calibrator is not None else TokenCalibrator()
        self._anchor: _Anchor | None = None

    @property
    def factor(self) -> float:
        """The current calibration factor."""
        return self.calibrator.factor

    @property
    def last_prompt_tokens(self) -> int | None:
        """The last server-reported prompt size, if any."""
        return None if self._anchor is None else self._anchor.prompt_tokens

    def estimate(self, messages: Sequence[BaseMessage], tools: Sequence[Any] | None = None) -> int:
        """Return the calibrated local estimate of a whole request (ignores the anchor).

        Args:
            messages: The messages of the request.
            tools: Its tool schemas.

        Returns:
            ``factor x`` the raw count.
        """
        return self.calibrator.apply(self.counter.count_messages(messages, tools))

    def record_usage(
        self,
        messages: Sequence[BaseMessage],
        prompt_tokens: int,
        *,
        tools: Sequence[Any] | None = None,
    ) -> None:
        """Record the server-reported prompt size of a request that was sent.

        Args:
            messages: Exactly the messages sent (after the context pipeline).
            prompt_tokens: ``usage.prompt_tokens`` (``usage_metadata["input_tokens"]``).
            tools: The tool schemas sent.

        Raises:
            ValueError: ``prompt_tokens`` is negative.
        """
        if prompt_tokens < 0:
            raise ValueError(f"prompt_tokens must be >= 0, got {prompt_tokens}")
        msgs = _as_messages(messages)
        raw_messages = self.counter(msgs)
        raw_tools = self.counter.count_tools(tools) if tools else 0
        raw_total = self.counter.count_messages(msgs, tools)
        self.calibrator.observe(raw_total, prompt_tokens)
        self._anchor = _Anchor(
            message_count=len(msgs),
            prompt_tokens=prompt_tokens,
            raw_messages=raw_messages,
            raw_tools=raw_tools,
            last_message_id=msgs[-1].id if msgs else None,
        )

    def record_response(
        self,
        messages: Sequence[BaseMessage],
        response: AIMessage,
        *,
        tools: Sequence[Any] | None = None,
    ) -> bool:
        """Record usage from a model reply's ``usage_metadata`` (if it has any).

        Args:
            messages: The messages that were sent.
            response: The reply (``usage_metadata["input_tokens"]`` is read).
            tools: The tool schemas sent.

        Returns:
            Whether usage was found and recorded.
        """
        usage = response.usage_metadata
        if not usage or not usage.get("input_tokens"):
            return False
        self.record_usage(messages, int(usage["input_tokens"]), tools=tools)
        return True

    def current_size(
        self, messages: Sequence[BaseMessage], tools: Sequence[Any] | None = None
    ) -> int:
        """Return the best estimate of the prompt size of sending ``messages`` now.

        Args:
            messages: The messages that would be sent.
            tools: The tool schemas that would be sent.

        Returns:
            Last server usage + calibrated estimate of the delta when ``messages``
            extends the last recorded request, else the calibrated full estimate.
        """
        msgs = _as_messages(messages)
        anchor = self._anchor
        if anchor is None or not msgs or len(msgs) < anchor.message_count:
            return self.estimate(msgs, tools)
        n = anchor.message_count
        total, at_anchor = self.counter._totals(msgs, n)
        if at_anchor != anchor.raw_messages or (
            anchor.last_message_id is not None and msgs[n - 1].id != anchor.last_message_id
        ):
            return self.estimate(msgs, tools)
        raw_tools = self.counter.count_tools(tools) if tools else 0
        delta = total - at_anchor + raw_tools - anchor.raw_tools
        return max(0, anchor.prompt_tokens + self.calibrator.apply(delta))

    def to_dict(self) -> dict[str, Any]:
        """Serialise to a small JSON-compatible dict (no message content).

        Returns:
            ``{"version", "calibrator", "anchor"}``.
        """
        anchor = self._anchor
        return {
            "version": 1,
            "calibrator": self.calibrator.to_dict(),
            "anchor": None
            if anchor is None
            else {
                "message_count": anchor.message_count,
                "prompt_tokens": anchor.prompt_tokens,
                "raw_messages": anchor.raw_messages,
                "raw_tools": anchor.raw_tools,
                "last_message_id": anchor.last_message_id,
            },
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], counter: TokenCounter | None = None
    ) -> ContextSizeTracker:
        """Restore a tracker saved with :meth:`to_dict`.

        Args:
            data: The serialised state.
            counter: The counter to use (must be configured like the original one for
                the anchor to stay valid; default: :func:`default_token_counter`).

        Returns:
            The tracker.

        Raises:
            ValueError: ``data`` is not a tracker state of a known version.
        """
        if not isinstance(data, Mapping) or data.get("version") != 1:
            raise ValueError(
                "not a ContextSizeTracker state (expected the dict from to_dict() with version 1)"
            )
        tracker = cls(counter, TokenCalibrator.from_dict(data.get("calibrator") or {}))
        raw = data.get("anchor")
        if raw:
            tracker._anchor = _Anchor(
                message_count=int(raw["message_count"]),
                prompt_tokens=int(raw["prompt_tokens"]),
                raw_messages=int(raw["raw_messages"]),
                raw_tools=int(raw["raw_tools"]),
                last_message_id=raw.get("last_message_id"),
            )
        return tracker
