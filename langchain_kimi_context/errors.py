"""Typed errors and the classification of Moonshot (Kimi) API errors.

Every error the package raises for a remote failure is both a LangChain
``langchain_core.exceptions.ModelError`` subclass (so LangChain middleware and retry
logic recognise it) and, where it came from an HTTP response, the matching ``openai``
SDK exception (so code that already catches ``openai.RateLimitError`` keeps working).

``is_retryable`` on each class (and :func:`is_retryable_error` for any exception) is the
single source of truth for retry decisions in the package: context overflow, invalid
requests, authentication, permission, not-found, content filter and exhausted quota are
never retried; overload/rate limits, 5xx, timeouts, connection errors and empty replies
are.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import openai
from langchain_core.exceptions import (
    ContextOverflowError,
    ModelAPIError,
    ModelAuthenticationError,
    ModelConnectionError,
    ModelError,
    ModelInvalidRequestError,
    ModelNotFoundError,
    ModelPermissionDeniedError,
    ModelRateLimitError,
    ModelTimeoutError,
)

from langchain_kimi_context.profiles import retired_profile

__all__ = [
    "ContextWindowTooSmallError",
    "KimiAPIContextOverflowError",
    "KimiAuthenticationError",
    "KimiConfigurationError",
    "KimiConnectionError",
    "KimiContentFilterError",
    "KimiContextOverflowError",
    "KimiEmptyResponseError",
    "KimiErrorInfo",
    "KimiInputError",
    "KimiInvalidRequestError",
    "KimiModelRetiredError",
    "KimiNotFoundError",
    "KimiOutputLimitError",
    "KimiPermissionDeniedError",
    "KimiQuotaExceededError",
    "KimiRateLimitError",
    "KimiServerError",
    "ThreadBusyError",
    "ThreadInterruptedError",
    "classify_moonshot_error",
    "from_openai_error",
    "is_retryable_error",
    "is_unreachable_error",
    "parse_context_overflow",
]

ErrorKind = Literal[
    "context_overflow",
    "invalid_request",
    "content_filter",
    "authentication",
    "permission_denied",
    "not_found",
    "engine_overloaded",
    "rate_limit",
    "quota_exceeded",
    "server_error",
    "unknown",
]

_OVERFLOW_PATTERNS: tuple[re.Pattern[str], ...] = (
    # "Invalid request: Your request exceeded model token limit: 262144 (requested: 269030)"
    # older: "Your request exceeded model token limit : 8192"
    re.compile(
        r"exceeded model token limit\s*:?\s*(?P<window>\d+)"
        r"(?:\s*\(requested:\s*(?P<requested>\d+)\))?",
        re.IGNORECASE,
    ),
    re.compile(r"model max length exceeded,?\s*max length\s*:?\s*(?P<window>\d+)", re.I),
    re.compile(r"input token length too long", re.IGNORECASE),
    re.compile(r"context_length_exceeded|maximum context length", re.IGNORECASE),
)
# Moonshot's 429s carry the delay only in the text ("... please try again after 3 seconds");
# no Retry-After header was seen on the live API (kimi-api reference "Errors").
_RETRY_AFTER = re.compile(
    r"try again (?:after|in)\s+(?P<secs>\d+(?:\.\d+)?)\s*(?:s|sec|second)", re.I
)
# Insufficient balance arrives as 429 exceeded_current_quota_error or as 403 "Your account
# ... is not active, organization ... exceeded current quota" (MoonshotAI/Kimi-K2 issue #5).
_QUOTA_TEXT = re.compile(r"quota|suspended|balance", re.I)
# Moonshot's 404 for a model: "Not found the model <id> or Permission denied".
_MODEL_NOT_FOUND = re.compile(r"Not found the model (?P<model>\S+) or Permission denied", re.I)


@dataclass(frozen=True)
class KimiErrorInfo:
    """What a Moonshot error response means.

    Attributes:
        kind: The error class (``"context_overflow"``, ``"rate_limit"``, ...).
        retryable: Whether sending the same request again may succeed.
        status_code: The HTTP status, when known.
        error_type: Moonshot's ``error.type`` string, when present.
        message: The human-readable message from the server.
        retry_after: Seconds the server asked the client to wait, when given.
        window: The model window the server named in an overflow error.
        requested: The token count the server said the request needed.
    """

    kind: ErrorKind
    retryable: bool
    status_code: int | None = None
    error_type: str | None = None
    message: str = ""
    retry_after: float | None = None
    window: int | None = None
    requested: int | None = None


def parse_context_overflow(message: str) -> tuple[bool, int | None, int | None]:
    """Recognise Moonshot's context-overflow wordings.

    Args:
        message: An error message from the server.

    Returns:
        ``(is_overflow, window, requested)``; the numbers are ``None`` when the wording
        does not carry them.
    """
    for pattern in _OVERFLOW_PATTERNS:
        match = pattern.search(message)
        if match:
            groups = match.groupdict()
            window = int(groups["window"]) if groups.get("window") else None
            requested = int(groups["requested"]) if groups.get("requested") else None
            return True, window, requested
    return False, None, None


def _error_fields(body: Any) -> tuple[str | None, str, str | None]:
    if isinstance(body, Mapping):
        err = body.get("error", body)
        if isinstance(err, Mapping):
            etype = err.get("type")
            msg = err.get("message")
            code = err.get("code")
            return (
                str(etype) if etype is not None else None,
                str(msg) if msg is not None else "",
                str(code) if code is not None else None,
            )
    if isinstance(body, str):
        return None, body, None
    return None, "", None


def classify_moonshot_error(
    status_code: int | None,
    body: Any,
    *,
    headers: Mapping[str, str] | None = None,
) -> KimiErrorInfo:
    """Classify a Moonshot error response.

    Args:
        status_code: HTTP status of the response.
        body: The decoded JSON body (``{"error": {"type", "message"}}``) or raw text.
        headers: Response headers (``Retry-After`` is honoured).

    Returns:
        The classification.
    """
    etype, message, _code = _error_fields(body)
    retry_after: float | None = None
    if headers:
        raw = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
        if raw is not None:
            try:
                retry_after = float(raw)
            except ValueError:
                retry_after = None
    if retry_after is None:
        m = _RETRY_AFTER.search(message)
        if m:
            retry_after = float(m.group("secs"))

    def info(kind: ErrorKind, retryable: bool, **extra: Any) -> KimiErrorInfo:
        return KimiErrorInfo(
            kind=kind,
            retryable=retryable,
            status_code=status_code,
            error_type=etype,
            message=message,
            retry_after=retry_after,
            **extra,
        )

    is_overflow, window, requested = parse_context_overflow(message)
    if is_overflow and (status_code in (None, 400, 413) or etype == "invalid_request_error"):
        return info("context_overflow", False, window=window, requested=requested)
    if etype == "content_filter" or "considered high risk" in message:
        return info("content_filter", False)
    if status_code == 401 or etype in {
        "invalid_authentication_error",
        "incorrect_api_key_error",
    }:
        return info("authentication", False)
    if etype == "exceeded_current_quota_error" or (
        status_code in (403, 429) and _QUOTA_TEXT.search(message)
    ):
        return info("quota_exceeded", False)
    if status_code == 403 or etype == "permission_denied_error":
        return info("permission_denied", False)
    if status_code == 404 or etype == "resource_not_found_error":
        return info("not_found", False)
    if etype == "engine_overloaded_error":
        return info("engine_overloaded", True)
    if status_code == 429 or etype == "rate_limit_reached_error":
        return info("rate_limit", True)
    if status_code is not None and status_code >= 500:
        return info("server_error", True)
    if status_code == 400 or etype == "invalid_request_error":
        return info("invalid_request", False)
    return info("unknown", False)


class KimiConfigurationError(ValueError):
    """A ``KimiChatModel`` or policy setting is invalid; the message says how to fix it.

    Example:
        >>> raise KimiConfigurationError("temperature must be in [0, 1]")
        Traceback (most recent call last):
        ...
        langchain_kimi_context.errors.KimiConfigurationError: temperature must be in [0, 1]
    """


class KimiContextOverflowError(ContextOverflowError):
    """The request does not fit the model's context window.

    Raised for the server's overflow wordings (as :class:`KimiAPIContextOverflowError`)
    and by the package itself when a preflight check or recovery chain gives up.

    Attributes:
        window: The window the server (or the profile) named, when known.
        requested: The tokens the request needed, when known.
        model: The model id, when known.

    Example:
        >>> err = KimiContextOverflowError("too long", window=8192, requested=9000)
        >>> err.window, err.is_retryable
        (8192, False)
    """

    def __init__(
        self,
        message: str,
        *,
        window: int | None = None,
        requested: int | None = None,
        model: str | None = None,
    ) -> None:
        super().__init__(message)
        self.window = window
        self.requested = requested
        self.model = model


class ContextWindowTooSmallError(KimiConfigurationError):
    """The model's context window is below the hard minimum the package accepts.

    Attributes:
        window: The resolved window.
        source: Where the window came from (``"policy"``, ``"profile"``, ...).
        minimum: The hard minimum.

    Example:
        >>> err = ContextWindowTooSmallError(window=8192, source="profile", minimum=16000)
        >>> "8192" in str(err) and "profile" in str(err)
        True
    """

    def __init__(self, *, window: int, source: str, minimum: int) -> None:
        self.window = window
        self.source = source
        self.minimum = minimum
        super().__init__(
            f"Context window of {window} tokens (from {source}) is below the hard minimum "
            f"of {minimum} tokens: long sessions cannot be managed in it. Use a model with "
            f"a larger window (e.g. a kimi-k2 model, 262144 tokens), or if the window is "
            f"wrong set ContextPolicy(context_window=...) to the real value."
        )


class _KimiStatusErrorMixin:
    """Attributes shared by errors that came from an HTTP error response."""

    info: KimiErrorInfo

    @property
    def retry_after(self) -> float | None:
        """Seconds the server asked to wait before retrying, when it said."""
        return self.info.retry_after


class KimiAPIContextOverflowError(
    openai.BadRequestError, KimiContextOverflowError, _KimiStatusErrorMixin
):
    """HTTP 400 overflow from the Kimi API (``exceeded model token limit``).

    Example:
        >>> issubclass(KimiAPIContextOverflowError, ContextOverflowError)
        True
    """

    def __init__(self, message: str, *, response: Any, body: object, info: KimiErrorInfo) -> None:
        openai.BadRequestError.__init__(self, message, response=response, body=body)
        self.window = info.window
        self.requested = info.requested
        self.model = None
        self.info = info


class KimiInvalidRequestError(
    openai.BadRequestError, ModelInvalidRequestError, _KimiStatusErrorMixin
):
    """HTTP 400 from the Kimi API that is not an overflow (never retried).

    Example:
        >>> KimiInvalidRequestError.is_retryable
        False
    """


class KimiContentFilterError(
    openai.BadRequestError, ModelInvalidRequestError, _KimiStatusErrorMixin
):
    """The request was rejected by Moonshot's content filter (never retried).

    Example:
        >>> KimiContentFilterError.is_retryable
        False
    """


class KimiAuthenticationError(
    openai.AuthenticationError, ModelAuthenticationError, _KimiStatusErrorMixin
):
    """HTTP 401: the API key is missing, wrong or revoked (never retried).

    Example:
        >>> KimiAuthenticationError.is_retryable
        False
    """


class KimiPermissionDeniedError(
    openai.PermissionDeniedError, ModelPermissionDeniedError, _KimiStatusErrorMixin
):
    """HTTP 403: the key may not use this model or endpoint (never retried).

    Example:
        >>> KimiPermissionDeniedError.is_retryable
        False
    """


class KimiNotFoundError(openai.NotFoundError, ModelNotFoundError, _KimiStatusErrorMixin):
    """HTTP 404: unknown model or resource (never retried).

    Example:
        >>> KimiNotFoundError.is_retryable
        False
    """


class KimiModelRetiredError(ModelNotFoundError):
    """The model was retired by Moonshot: says when and which current model to use.

    Raised before any request when a retired model is called on Moonshot's own endpoints
    (``api.moonshot.cn`` / ``api.moonshot.ai``), and instead of
    :class:`KimiNotFoundError` when any endpoint answers 404 for a model the catalog knows
    as retired. Other base URLs (gateways, third-party hosts) that still serve the model
    are called normally. Never retried.

    Attributes:
        model: The retired model id.
        retired_on: ISO date of the retirement, when known.
        replacement: The current model to use instead, when known.

    Example:
        >>> err = KimiModelRetiredError("kimi-k2.5", retired_on="2026-08-31",
        ...                             replacement="kimi-k2.6")
        >>> "2026-08-31" in str(err) and "kimi-k2.6" in str(err), err.is_retryable
        (True, False)
    """

    def __init__(
        self,
        model: str,
        *,
        retired_on: str | None = None,
        replacement: str | None = None,
        detail: str = "",
    ) -> None:
        self.model = model
        self.retired_on = retired_on
        self.replacement = replacement
        use = (
            f" Use {replacement!r} instead (KimiChatModel(model={replacement!r}))."
            if replacement
            else " GET /v1/models (KimiChatModel(...).refresh_profile()) lists the models."
        )
        super().__init__(
            f"Model {model!r} was retired by Moonshot on {retired_on or 'an earlier date'} "
            f"and is no longer served by its API.{use} Third-party hosts that still serve "
            f"it work when you pass their base_url.{detail}"
        )


class KimiOutputLimitError(ModelError):
    """A reply was cut by ``max_tokens`` before it said anything (``finish_reason="length"``).

    Thinking models count their reasoning as output: a budget that the reasoning uses up
    leaves no answer. Raised instead of returning an empty answer; never retried as-is
    (the same budget would be cut again). Attributes carry what was produced.

    Attributes:
        model: The model id.
        max_tokens: The output budget of the request.
        reasoning: The (partial) reasoning the server returned.

    Example:
        >>> err = KimiOutputLimitError("cut", model="kimi-k2.6", max_tokens=64)
        >>> err.is_retryable, err.max_tokens
        (False, 64)
    """

    def __init__(
        self, message: str, *, model: str, max_tokens: int | None, reasoning: str = ""
    ) -> None:
        super().__init__(message)
        self.model = model
        self.max_tokens = max_tokens
        self.reasoning = reasoning


class KimiRateLimitError(openai.RateLimitError, ModelRateLimitError, _KimiStatusErrorMixin):
    """HTTP 429 overload or rate limit: retry after ``retry_after`` seconds (or backoff).

    Example:
        >>> KimiRateLimitError.is_retryable
        True
    """

    is_retryable = True


class KimiQuotaExceededError(openai.RateLimitError, ModelRateLimitError, _KimiStatusErrorMixin):
    """Out of balance or suspended: never retried.

    Arrives as 429 ``exceeded_current_quota_error`` or as 403 "... exceeded current quota".

    Example:
        >>> KimiQuotaExceededError.is_retryable
        False
    """

    is_retryable = False


class KimiServerError(openai.InternalServerError, ModelAPIError, _KimiStatusErrorMixin):
    """HTTP 5xx from the Kimi API (retried with backoff).

    Example:
        >>> KimiServerError.is_retryable
        True
    """


class KimiEmptyResponseError(ModelAPIError):
    """The server answered 200 with no content, no tool calls and no reasoning.

    Example:
        >>> KimiEmptyResponseError("empty reply").is_retryable
        True
    """

    is_retryable = True


class KimiConnectionError(openai.APIConnectionError, ModelConnectionError):
    """The Kimi endpoint could not be reached (connection refused, DNS failure...).

    ``url`` is the endpoint that was tried (never with credentials). Retryable in the
    middle of a session (a network blip); on the first call of a session the agent
    raises it at once, since it is almost always a wrong ``base_url``.

    Example:
        >>> import httpx
        >>> err = KimiConnectionError(
        ...     "http://127.0.0.1:9/v1", "Connection refused",
        ...     request=httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions"))
        >>> err.url, err.is_retryable
        ('http://127.0.0.1:9/v1', True)
    """

    is_retryable = True

    def __init__(self, url: str, reason: str, *, request: Any) -> None:
        self.url = url
        self.reason = reason
        message = (
            f"Cannot reach the Kimi API at {url}: {reason}. Check base_url (or "
            "MOONSHOT_BASE_URL): the host, the port and that a server is listening there."
        )
        super().__init__(message=message, request=request)


def is_unreachable_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error it was raised from) failed at the connect step.

    Connection refused or a host name that does not resolve: the endpoint was never
    reached (unlike a timeout or a connection dropped mid-reply).

    Args:
        exc: Any exception.

    Returns:
        ``True`` when the endpoint was never reached.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, KimiConnectionError | ConnectionRefusedError | socket.gaierror):
            return True
        if type(seen).__name__ == "ConnectError":  # httpx's / httpcore's (any vendoring)
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class KimiInputError(ValueError):
    """An agent or session input has the wrong shape; nothing was sent or stored.

    Example:
        >>> raise KimiInputError("expected {'messages': [...]}")
        Traceback (most recent call last):
        ...
        langchain_kimi_context.errors.KimiInputError: expected {'messages': [...]}
    """


class ThreadBusyError(RuntimeError):
    """Another run holds this thread (session) and the call was not queued behind it.

    Raised with ``multitask_strategy="reject"`` at once, and with ``"enqueue"`` when the
    wait exceeds ``busy_timeout_s``. Nothing was written: send the turn again later.

    Attributes:
        thread_id: The busy thread.
        strategy: The multitask strategy in force.
        waited_s: Seconds waited before giving up.

    Example:
        >>> str(ThreadBusyError("t1", strategy="reject", waited_s=0.0))[:40]
        "Thread 't1' is busy: another run holds i"
    """

    def __init__(self, thread_id: str, *, strategy: str, waited_s: float) -> None:
        self.thread_id = thread_id
        self.strategy = strategy
        self.waited_s = waited_s
        how = (
            "multitask_strategy='reject'"
            if strategy == "reject"
            else f"waited {waited_s:.1f} s (busy_timeout_s) with multitask_strategy='enqueue'"
        )
        super().__init__(
            f"Thread {thread_id!r} is busy: another run holds it ({how}). Nothing was "
            "written; send the turn again when it finishes, raise AgentSettings("
            "busy_timeout_s=...) or use multitask_strategy='enqueue' to queue it."
        )


class ThreadInterruptedError(RuntimeError):
    """A newer run on the thread asked this one to stop (``multitask_strategy="interrupt"``).

    The run stopped at a step boundary: everything up to its last completed step is
    checkpointed, and the newer run goes on from there (a dangling tool call is answered
    with a synthetic result in what the model sees).

    Attributes:
        thread_id: The thread.

    Example:
        >>> str(ThreadInterruptedError("t1"))[:45]
        "The run on thread 't1' was interrupted by a n"
    """

    def __init__(self, thread_id: str) -> None:
        self.thread_id = thread_id
        super().__init__(
            f"The run on thread {thread_id!r} was interrupted by a newer run "
            "(multitask_strategy='interrupt'); its completed steps are saved and the newer "
            "run continues from them."
        )


_KIND_TO_CLASS: dict[str, type[openai.APIStatusError]] = {
    "invalid_request": KimiInvalidRequestError,
    "content_filter": KimiContentFilterError,
    "authentication": KimiAuthenticationError,
    "permission_denied": KimiPermissionDeniedError,
    "not_found": KimiNotFoundError,
    "engine_overloaded": KimiRateLimitError,
    "rate_limit": KimiRateLimitError,
    "quota_exceeded": KimiQuotaExceededError,
    "server_error": KimiServerError,
}


def _endpoint(exc: openai.APIStatusError) -> str:
    """``scheme://host/v1`` the failed request went to (never carries credentials)."""
    try:
        url = exc.response.request.url
    except (AttributeError, RuntimeError):
        return "the configured base URL"
    path = str(url.path)
    prefix = path[: path.find("/v1") + 3] if "/v1" in path else ""
    return f"{url.scheme}://{url.host}{f':{url.port}' if url.port else ''}{prefix}"


_GLOBAL_ENDPOINT = "https://api.moonshot.ai/v1"
_CHINA_ENDPOINT = "https://api.moonshot.cn/v1"


def _fix_hint(kind: str, exc: openai.APIStatusError) -> str:
    """What the user should do about a non-retryable error of this kind ('' = nothing)."""
    endpoint = _endpoint(exc)
    if kind == "authentication":
        if "moonshot.ai" in endpoint:
            other = f"a key from platform.moonshot.cn needs {_CHINA_ENDPOINT}"
        elif "moonshot.cn" in endpoint:
            other = f"a key from platform.moonshot.ai (global) needs {_GLOBAL_ENDPOINT}"
        else:
            other = (
                f"platform.moonshot.ai keys work with {_GLOBAL_ENDPOINT}, platform.moonshot.cn "
                f"keys with {_CHINA_ENDPOINT}"
            )
        return (
            f" (HTTP 401 from {endpoint}). Check the API key (MOONSHOT_API_KEY or "
            "KimiChatModel(api_key=...)) and that it belongs to this endpoint's platform: "
            f"{other} (set MOONSHOT_BASE_URL or base_url=...)."
        )
    if kind == "not_found":
        return (
            f" (HTTP 404 from {endpoint}). Check the model name (e.g. 'kimi-k2.6' or "
            "'kimi-k3'); GET /v1/models (KimiChatModel(...).refresh_profile()) lists the "
            "models your key can use."
        )
    if kind == "quota_exceeded":
        return " Top up the account balance (or check its plan); retrying does not help."
    return ""


def _retired_error(info: KimiErrorInfo) -> KimiModelRetiredError | None:
    """The retired-model error for a 404 that names a model the catalog knows as retired."""
    match = _MODEL_NOT_FOUND.search(info.message)
    if match is None:
        return None
    profile = retired_profile(match.group("model"))
    if profile is None:
        return None
    return KimiModelRetiredError(
        profile.name,
        retired_on=profile.retired_on,
        replacement=profile.replacement,
        detail=f" (server: {info.message})",
    )


def from_openai_error(exc: BaseException) -> BaseException:
    """Translate an ``openai`` SDK (or langchain-openai) error into the package's type.

    Errors that are not HTTP status errors (timeouts, connection errors) and errors
    already translated are returned unchanged.

    Args:
        exc: The exception raised by the OpenAI client.

    Returns:
        The typed exception to raise instead (``raise from_openai_error(e) from e``).
    """
    if isinstance(exc, _KimiStatusErrorMixin) or not isinstance(exc, openai.APIStatusError):
        return exc
    body = exc.body
    if body is not None and not (isinstance(body, Mapping) and "error" in body):
        body = {"error": body} if isinstance(body, Mapping) else body
    if body is None:
        body = {"error": {"message": exc.message}}
    info = classify_moonshot_error(exc.status_code, body, headers=exc.response.headers)
    message = info.message or exc.message
    if info.kind == "context_overflow":
        return KimiAPIContextOverflowError(message, response=exc.response, body=exc.body, info=info)
    if info.kind == "not_found":
        retired = _retired_error(info)
        if retired is not None:
            return retired
    cls = _KIND_TO_CLASS.get(info.kind)
    if cls is None:
        return exc
    message += _fix_hint(info.kind, exc)
    new = cls(message, response=exc.response, body=exc.body)
    new.info = info  # type: ignore[attr-defined]
    return new


def is_retryable_error(exc: BaseException) -> bool:
    """Decide whether a failed model call may be retried as-is.

    Args:
        exc: Any exception raised by a model call.

    Returns:
        ``True`` for overload/rate limit, 5xx, timeouts, connection errors and empty
        replies; ``False`` for overflow, invalid request, auth, permission, not found,
        content filter, quota and every non-API error.

    Example:
        >>> is_retryable_error(KimiContextOverflowError("too long"))
        False
        >>> is_retryable_error(KimiEmptyResponseError("no content"))
        True
    """
    if isinstance(exc, ContextOverflowError):
        return False
    if isinstance(exc, openai.APIStatusError) and not isinstance(exc, ModelError):
        exc = from_openai_error(exc)
    if isinstance(exc, ModelError):
        return bool(exc.is_retryable)
    if isinstance(exc, (ModelConnectionError, ModelTimeoutError)):
        return True
    if isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError)):
        return True
    return isinstance(exc, TimeoutError)
