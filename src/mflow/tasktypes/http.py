"""`http` tasks: one HTTP(S) request, which succeeds when the response has the expected
status. No shell is involved.

Keys (besides the common ones):

- `url` (required): an `http://` or `https://` URL.
- `method`: GET (default), HEAD, POST, PUT, PATCH, DELETE or OPTIONS, in any case.
- `headers`: `{"Name": "value"}`.
- `body` (a string, sent as written) or `json` (any JSON value, sent as JSON with
  `Content-Type: application/json` unless `headers` says otherwise); not both.
- `expect_status`: a status code or a list of them; default: any 2xx.
- `request_timeout`: seconds allowed to connect, and between two reads or writes; default:
  none (only the task's `timeout` applies).
- `follow_redirects`: default true.
- `verify`: TLS certificate verification: true (default: the system's CA certificates),
  false, or the path of a CA bundle file or folder (relative to the task file).

`${VAR}` in `url`, in header values, in `body` and in the strings of `json` is replaced from
the task's environment (mflow's, then config.json's `env`, then the task's `env`) when the
task runs; `validate` reports a variable that is not set. Proxies follow the task's
environment too (`http_proxy`, `https_proxy`, `all_proxy`, `no_proxy`, either case), and
so do `SSL_CERT_FILE` / `SSL_CERT_DIR`.

The task log gets the request line and headers, the response status line and headers, and
the response body, streamed (a binary body is counted, not shown). Secrets never reach the
log or the attempt's recorded details: the values of Authorization, Cookie and similar
headers, of query parameters named like `token` or `api_key`, and the URL's password are
shown as `***`, also where the server echoes them back in its answer.
"""

from __future__ import annotations

import functools
import json as jsonlib
import os
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import unquote, unquote_plus, urlsplit, urlunsplit

from pydantic import Field, ValidationInfo, field_validator

from mflow.envvars import expand, unset_names
from mflow.modelcheck import suggest
from mflow.tasktypes.base import (
    MAX_SECONDS,
    TaskContext,
    TaskResult,
    TaskSpec,
    TaskType,
    empty_dict,
    open_log,
)

if TYPE_CHECKING:
    import ssl

    import httpx

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
MASK = "***"
# Header and query parameter names whose values are secrets (Authorization, X-Api-Key...).
_SECRET_NAME = re.compile(
    r"auth(?!ors?$)|token|secret|passw|pwd|api[-_]?key|signature|credential|session|cookie"
    r"|^key$|^sig$",
    re.IGNORECASE,
)
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an RFC 9110 token
_MIN_SECRET = 3  # shorter values are masked where they are known, not searched for in text
_TEXT_TYPES = frozenset(
    """application/json application/xml application/javascript application/ecmascript
    application/x-www-form-urlencoded application/yaml application/x-yaml application/csv
    application/x-ndjson application/ndjson application/graphql application/sql""".split()
)
_BINARY_PREFIXES = ("image/", "audio/", "video/", "font/", "model/")
_BINARY_TYPES = frozenset(
    """application/octet-stream application/zip application/gzip application/x-gzip
    application/pdf application/x-tar application/x-protobuf application/x-7z-compressed
    application/vnd.apache.parquet""".split()
)
# Set by mflow itself for each run (MFLOW_RUN_ID, ...): unknown when a flow is validated.
_RUN_VARIABLE_PREFIX = "MFLOW_"


def _url_problem(url: str) -> str | None:
    """What makes `url` unusable, seen before its ${VAR}s are replaced; None if nothing."""
    if not url.strip():
        return "the URL is empty"
    if url != url.strip():
        return f"the URL starts or ends with white space: {display_url(url)!r:.100}"
    if any(ord(c) < 32 or ord(c) == 127 for c in url):
        return f"the URL holds a control character (a line break, a tab): {display_url(url)!r:.100}"
    scheme, separator, rest = url.partition("://")
    if not separator:
        if url.startswith("${"):
            return None  # the variable holds the scheme and host
        return f"must be an http:// or https:// URL (got {display_url(url)!r:.100})"
    if "${" in scheme:
        return None
    if scheme.lower() not in ("http", "https"):
        return f"unsupported scheme '{scheme}': use an http:// or https:// URL"
    netloc = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "${" in netloc:
        return None
    host = netloc.rpartition("@")[2]
    if not host or host.startswith(":"):
        return f"the URL has no host name (got {display_url(url)!r:.100})"
    try:
        urlsplit(url).port  # noqa: B018  (raises on a port that is not a number in range)
    except ValueError:
        return f"the URL's port is not a number from 1 to 65535 (got {display_url(url)!r:.100})"
    return None


class HttpSpec(TaskSpec):
    """One HTTP(S) request; see the module's documentation for the keys."""

    url: str = Field(description="http:// or https:// URL; ${VAR} expanded at run time")
    method: str = Field(default="GET", description=f"one of {', '.join(METHODS)}")
    headers: dict[str, str] = Field(
        default_factory=empty_dict, description="request headers; ${VAR} expanded in the values"
    )
    body: str | None = Field(
        default=None, description="request body, sent as written; ${VAR} expanded"
    )
    json_: Any = Field(
        default=None,
        alias="json",
        description="request body as JSON (instead of body); ${VAR} expanded in strings",
    )
    expect_status: int | list[int] | None = Field(
        default=None, description="the status code(s) that mean success; default: any 2xx"
    )
    request_timeout: float | None = Field(
        default=None,
        gt=0,
        le=MAX_SECONDS,
        description="seconds to connect, and between reads; default: only the task's timeout",
    )
    follow_redirects: bool = Field(default=True, description="follow 3xx redirects")
    verify: bool | str = Field(
        default=True,
        description="check the server's TLS certificate: true, false, or a CA bundle path",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        problem = _url_problem(url)
        if problem:
            raise ValueError(problem)
        return url

    @field_validator("method")
    @classmethod
    def _method(cls, method: str) -> str:
        upper = method.strip().upper()
        if upper not in METHODS:
            raise ValueError(
                f"unknown HTTP method {method!r}{suggest(upper, METHODS)}; "
                f"use one of {', '.join(METHODS)}"
            )
        return upper

    @field_validator("headers")
    @classmethod
    def _headers(cls, headers: dict[str, str]) -> dict[str, str]:
        seen: dict[str, str] = {}
        for name, value in headers.items():
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a valid header name")
            if any(c in value for c in "\r\n\0"):
                raise ValueError(f"the value of header {name} holds a line break or NUL")
            if name.lower() in seen:
                raise ValueError(f"header given twice, as '{seen[name.lower()]}' and '{name}'")
            seen[name.lower()] = name
        return headers

    @field_validator("json_")
    @classmethod
    def _json(cls, value: Any, info: ValidationInfo) -> Any:
        if info.data.get("body") is not None:
            raise ValueError("give either 'body' or 'json', not both")
        try:
            jsonlib.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not a JSON value: {exc}") from None
        return value

    @field_validator("expect_status", mode="plain")
    @classmethod
    def _expect_status(cls, value: Any) -> int | list[int] | None:
        if value is None:
            return None
        codes = value if isinstance(value, list) else [value]
        if not codes:
            raise ValueError("give at least one status code")
        for code in codes:
            if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
                raise ValueError(
                    f"must be an HTTP status code (100 to 599) or a list of them (got {code!r:.40})"
                )
        return value

    @field_validator("verify", mode="plain")
    @classmethod
    def _verify(cls, value: Any) -> bool | str:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip():
            return value
        raise ValueError(
            f"must be true, false or the path of a CA certificate bundle (got {value!r:.40})"
        )

    @property
    def has_json(self) -> bool:
        return "json_" in self.model_fields_set

    def templates(self) -> Iterator[tuple[str, str, str]]:
        """(key, what, text) of every value where ${VAR} is expanded."""
        yield "url", "", self.url
        for name, value in self.headers.items():
            yield "headers", f"header {name}: ", value
        if self.body is not None:
            yield "body", "", self.body
        if self.has_json:
            for text in _json_strings(self.json_):
                yield "json", "", text


def _json_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _json_strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _json_strings(item)


class HttpType(TaskType):
    """An HTTP(S) request; the task succeeds when the response has the expected status.

    See this module's documentation for the keys."""

    name = "http"
    spec = HttpSpec

    def check(self, task: TaskSpec, folder: Path) -> list[tuple[str, str]]:
        assert isinstance(task, HttpSpec)
        found = []
        if isinstance(task.verify, str):
            path = folder / os.path.expanduser(task.verify)
            if not path.exists():
                found.append(("verify", f"no CA certificate file or folder at {path}"))
        settings = self.setup.settings
        if settings is not None:  # else config.json is broken: its env is unknown
            known = dict.fromkeys([*os.environ, *settings.env, *task.env], "")
            reported = set()
            for key, what, text in task.templates():
                for name in unset_names(text, known):
                    if name.startswith(_RUN_VARIABLE_PREFIX) or (key, what, name) in reported:
                        continue
                    reported.add((key, what, name))
                    found.append(
                        (
                            key,
                            f"{what}${{{name}}} is set neither in the environment, nor in "
                            "config.json's env, nor in the task's env",
                        )
                    )
        return found

    async def run(self, task: TaskSpec, ctx: TaskContext) -> TaskResult:
        import asyncio  # the run loop's; validation has no need of it

        assert isinstance(task, HttpSpec)
        secrets = _Secrets()
        try:
            log = _Log(ctx, secrets)
        except _LogError as exc:
            return TaskResult(False, None, str(exc))
        try:
            return await _Exchange(task, ctx, log, secrets).run()
        except _LogError as exc:
            return TaskResult(False, None, str(exc))
        except asyncio.CancelledError:
            try:
                log.line("-- cancelled (the task's timeout, or the run was stopped)")
            except _LogError:
                pass
            raise
        finally:
            log.close()


class _Unusable(Exception):
    """The request cannot be made as the task describes it (an unset variable, say)."""


class _LogError(Exception):
    """The task log cannot be written: the task fails rather than lose its output."""


class _Secrets:
    """Values that must never be written: masked wherever they appear in the log's text."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.longest = 0

    def add(self, value: str | None) -> None:
        if value and len(value) >= _MIN_SECRET and value not in self._values:
            self._values.add(value)
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered))
            self.longest = len(ordered[0])

    def mask(self, text: str) -> str:
        return self._pattern.sub(MASK, text) if self._pattern else text


def _masked_header(name: str, value: str) -> str:
    if not _SECRET_NAME.search(name):
        return value
    scheme, space, _ = value.partition(" ")
    # "Bearer ***" says which kind of credential went, and not the credential
    return f"{scheme} {MASK}" if space and scheme.isalpha() else MASK


def display_url(url: str) -> str:
    """`url` with its password and the values of secret query parameters as ***."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:{MASK}@{hostport}"
    query = "&".join(
        f"{name}={MASK}" if sep and value and _SECRET_NAME.search(unquote_plus(name)) else item
        for item in parts.query.split("&")
        for name, sep, value in [item.partition("=")]
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query if parts.query else ""))


def _url_secrets(url: str, secrets: _Secrets) -> None:
    import base64

    try:
        parts = urlsplit(url)
    except ValueError:
        return
    if parts.password is not None:
        secrets.add(parts.password)
        secrets.add(unquote(parts.password))
        basic = f"{unquote(parts.username or '')}:{unquote(parts.password)}"
        secrets.add(base64.b64encode(basic.encode()).decode())
    for item in parts.query.split("&"):
        name, _, value = item.partition("=")
        if _SECRET_NAME.search(unquote_plus(name)):
            secrets.add(value)
            secrets.add(unquote_plus(value))


class _Log:
    """The attempt's log; every line is masked, and a write that fails fails the task."""

    def __init__(self, ctx: TaskContext, secrets: _Secrets):
        self.path = ctx.log_path
        self._secrets = secrets
        try:
            self._file: TextIO | None = open_log(ctx)
        except OSError as exc:
            raise _LogError(f"cannot write its log {self.path}: {exc.strerror or exc}") from None

    def line(self, text: str) -> None:
        self.write(self._secrets.mask(text) + "\n")

    def write(self, text: str) -> None:
        """Text already masked."""
        if self._file is None:
            return
        try:
            self._file.write(text)
            self._file.flush()  # `mflow logs -f` shows a slow body as it comes
        except OSError as exc:
            raise _LogError(f"cannot write its log {self.path}: {exc.strerror or exc}") from None

    def close(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except OSError:
                pass  # a failed write was reported already


@dataclass
class _Prepared:
    method: str
    url: str
    headers: dict[str, str | bytes]
    content: bytes | None


def _expanded(text: str, env: Mapping[str, str], where: str) -> str:
    missing = unset_names(text, env)
    if missing:
        raise _Unusable(f"{where}: ${{{missing[0]}}} is not set in the task's environment")
    return expand(text, env)


def _expanded_json(value: Any, env: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return _expanded(value, env, "json")
    if isinstance(value, list):
        return [_expanded_json(item, env) for item in value]
    if isinstance(value, dict):
        return {key: _expanded_json(item, env) for key, item in value.items()}
    return value


def _prepare(task: HttpSpec, env: Mapping[str, str], secrets: _Secrets) -> _Prepared:
    """The request with ${VAR}s replaced; every secret in it registered in `secrets`."""
    import httpx

    url = _expanded(task.url, env, "url")
    _url_secrets(url, secrets)
    problem = _url_problem(url)
    if problem is None:
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            problem = str(exc)
        else:
            if parsed.scheme not in ("http", "https") or not parsed.host:
                problem = "must be an http:// or https:// URL with a host name"
    if problem:
        raise _Unusable(f"url {display_url(url)!r} after expanding variables: {problem}")
    headers: dict[str, str | bytes] = {}
    for name, template in task.headers.items():
        value = _expanded(template, env, f"header {name}")
        if any(c in value for c in "\r\n\0"):
            raise _Unusable(
                f"header {name}: the value holds a line break or NUL after expanding variables"
            )
        if _SECRET_NAME.search(name):
            secrets.add(value)
            secrets.add(value.partition(" ")[2].strip())
            if name.lower() == "cookie":
                for pair in value.split(";"):
                    secrets.add(pair.partition("=")[2].strip())
        # HTTP headers are bytes: a value beyond ASCII goes as UTF-8 (httpx would refuse it)
        headers[name] = value if value.isascii() else value.encode("utf-8")
    content = None
    if task.body is not None:
        content = _expanded(task.body, env, "body").encode("utf-8")
    elif task.has_json:
        document = _expanded_json(task.json_, env)
        content = jsonlib.dumps(document, ensure_ascii=False, allow_nan=False).encode("utf-8")
        if not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = "application/json"
    return _Prepared(task.method, url, headers, content)


def _proxy_for(url: httpx.URL, env: Mapping[str, str]) -> str | None:
    """The proxy the task's environment names for `url`, as curl would choose it."""
    proxies: dict[str, str] = {}
    for name, value in env.items():
        lower = name.lower()
        if lower.endswith("_proxy") and value.strip():
            scheme = lower[: -len("_proxy")]
            if name == lower or scheme not in proxies:  # the lower-case spelling wins
                proxies[scheme] = value.strip()
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if not proxy:
        return None
    if "no" in proxies:
        from urllib.request import proxy_bypass_environment

        host = url.host if url.port is None else f"{url.host}:{url.port}"
        if proxy_bypass_environment(host, {"no": proxies["no"]}):
            return None
    return proxy if "://" in proxy else f"http://{proxy}"


def _tls(task: HttpSpec, ctx: TaskContext) -> bool | ssl.SSLContext:
    """What to verify the server's certificate against."""
    import ssl

    if task.verify is False:
        return False
    cafile = capath = None
    if isinstance(task.verify, str):
        path = ctx.cwd / os.path.expanduser(task.verify)
        cafile, capath = (None, str(path)) if path.is_dir() else (str(path), None)
    else:
        cafile = ctx.env.get("SSL_CERT_FILE") or None
        capath = ctx.env.get("SSL_CERT_DIR") or None
        if cafile is None and capath is None:
            defaults = ssl.get_default_verify_paths()
            if not any(p and os.path.exists(p) for p in (defaults.cafile, defaults.capath)):
                import certifi  # no system CA certificates: those httpx ships with

                cafile = certifi.where()
    try:
        return _context(cafile, capath)
    except (OSError, ssl.SSLError) as exc:
        where = cafile or capath
        raise _Unusable(f"cannot load CA certificates from {where}: {exc}") from None


@functools.lru_cache(maxsize=16)
def _context(cafile: str | None, capath: str | None) -> ssl.SSLContext:
    """Loading CA certificates takes tens of milliseconds: once per run is enough."""
    import ssl

    return ssl.create_default_context(cafile=cafile, capath=capath)


def _raw_headers(headers: httpx.Headers) -> Iterator[tuple[str, str]]:
    """Headers as they are sent or were received (httpx lower-cases the names otherwise)."""
    for name, value in headers.raw:
        yield name.decode("latin-1"), value.decode(headers.encoding, "replace")


def _is_binary(content_type: str | None, first: bytes) -> bool:
    mime = (content_type or "").split(";")[0].strip().lower()
    if mime.startswith("text/") or mime in _TEXT_TYPES or mime.endswith(("+json", "+xml")):
        return False
    if mime.startswith(_BINARY_PREFIXES) or mime in _BINARY_TYPES:
        return True
    return b"\0" in first


def _reason(response: httpx.Response) -> str:
    from http import HTTPStatus

    reason = " ".join(response.reason_phrase.split())
    if not reason:
        try:
            reason = HTTPStatus(response.status_code).phrase
        except ValueError:
            reason = ""
    return reason


def _expected_text(expect: int | list[int] | None) -> str:
    if expect is None:
        return "2xx"
    if isinstance(expect, int):
        return str(expect)
    codes = [str(code) for code in expect]
    return codes[0] if len(codes) == 1 else f"{', '.join(codes[:-1])} or {codes[-1]}"


def _is_expected(code: int, expect: int | list[int] | None) -> bool:
    if expect is None:
        return 200 <= code < 300
    return code == expect if isinstance(expect, int) else code in expect


class _Exchange:
    """One attempt: the request, its log, its outcome."""

    def __init__(self, task: HttpSpec, ctx: TaskContext, log: _Log, secrets: _Secrets):
        self.task = task
        self.ctx = ctx
        self.log = log
        self.secrets = secrets
        self.reading_body = False
        self.started = time.monotonic()

    async def run(self) -> TaskResult:
        import httpx

        from mflow import __version__

        try:
            prepared = _prepare(self.task, self.ctx.env, self.secrets)
            url = httpx.URL(prepared.url)
            proxy = _proxy_for(url, self.ctx.env)
            verify = _tls(self.task, self.ctx)  # also for http://: a redirect may lead to https
        except _Unusable as exc:
            return self._failed(str(exc))
        self.ctx.record("method", prepared.method)
        self.ctx.record("url", display_url(prepared.url))
        if proxy:
            _url_secrets(proxy, self.secrets)
            self.log.line(f"-- through the proxy {display_url(proxy)}")
        client = httpx.AsyncClient(
            headers={"User-Agent": f"mflow/{__version__}"},
            timeout=httpx.Timeout(self.task.request_timeout),
            follow_redirects=self.task.follow_redirects,
            verify=verify,
            proxy=proxy,
            trust_env=False,  # the task's environment was read above, not mflow's
            event_hooks={"request": [self._on_request], "response": [self._on_response]},
        )
        try:
            async with client:
                request = client.build_request(
                    prepared.method, url, headers=prepared.headers, content=prepared.content
                )
                # An Authorization header of the task wins over the URL's user:password
                own = any(name.lower() == "authorization" for name in prepared.headers)
                auth = {"auth": httpx.Auth()} if own else {}
                response = await client.send(request, stream=True, **auth)
                try:
                    self.ctx.record("status", response.status_code)
                    if response.url != url:
                        self.ctx.record("final_url", display_url(str(response.url)))
                    await self._body(response)
                finally:
                    await response.aclose()
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            message = self._reason(exc)
            if proxy and isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
                message += f" (through the proxy {display_url(proxy)})"
            return self._failed(self.secrets.mask(message))
        status = f"HTTP {response.status_code} {_reason(response)}".rstrip()
        status = self.secrets.mask(status)
        if _is_expected(response.status_code, self.task.expect_status):
            return TaskResult(True, 0, status)
        return self._failed(f"{status} (expected {_expected_text(self.task.expect_status)})")

    def _failed(self, message: str) -> TaskResult:
        message = " ".join(message.split())
        self.log.line(f"-- failed: {message}")
        return TaskResult(False, None, message)

    async def _on_request(self, request: httpx.Request) -> None:
        _url_secrets(str(request.url), self.secrets)  # a redirect's URL brings its own
        self.log.line(f"> {request.method} {display_url(str(request.url))}")
        for name, value in _raw_headers(request.headers):
            self.log.line(f"> {name}: {_masked_header(name, value)}")

    async def _on_response(self, response: httpx.Response) -> None:
        location = response.headers.get("location")
        if location:  # a signed URL, say: its secrets are masked in the log from here on
            try:
                _url_secrets(str(response.url.join(location)), self.secrets)
            except (httpx.InvalidURL, ValueError):
                pass  # a Location that is no URL: the redirect itself fails, and says so
        self.log.line(f"< {response.http_version} {response.status_code} {_reason(response)}")
        for name, value in _raw_headers(response.headers):
            self.log.line(f"< {name}: {_masked_header(name, value)}")
        if response.is_redirect and self.task.follow_redirects:
            self.log.line("")

    async def _body(self, response: httpx.Response) -> None:
        """Stream the body into the log, masked, never holding more than a chunk of it."""
        import codecs

        self.reading_body = True
        self.log.write("\n")
        size = 0
        binary: bool | None = None
        decoder = None
        carry = ""  # the end of the text so far, kept until we know it starts no secret
        keep = max(self.secrets.longest - 1, 0)
        tail = "\n"
        async for chunk in response.aiter_bytes():
            if not chunk:
                continue
            size += len(chunk)
            if binary is None:
                binary = _is_binary(response.headers.get("content-type"), chunk)
                try:
                    charset = response.charset_encoding or "utf-8"
                    if not codecs.lookup(charset)._is_text_encoding:  # type: ignore[attr-defined]
                        raise LookupError(charset)  # zlib, base64, rot13: no text codecs
                    make = codecs.getincrementaldecoder(charset)
                except LookupError:  # a charset Python does not know
                    make = codecs.getincrementaldecoder("utf-8")
                decoder = make(errors="replace")
            if binary or decoder is None:
                continue
            text = self.secrets.mask(carry + decoder.decode(chunk))
            cut = len(text) - keep
            if cut > 0:
                self.log.write(text[:cut])
                tail = text[cut - 1]
                carry = text[cut:]
            else:
                carry = text
        if decoder is not None and not binary:
            text = self.secrets.mask(carry + decoder.decode(b"", final=True))
            if text:
                self.log.write(text)
                tail = text[-1]
        if tail != "\n":
            self.log.write("\n")
        elapsed = time.monotonic() - self.started
        kind = response.headers.get("content-type", "unknown type")
        shown = f"binary body ({kind}), not shown: " if binary else ""
        self.log.line(f"-- {shown}{size} bytes of body; {elapsed:.3f} s")

    def _reason(self, exc: Exception) -> str:
        """A failed exchange, said in one line."""
        import socket
        import ssl

        import httpx

        try:
            url = exc.request.url if isinstance(exc, httpx.RequestError) else None
        except RuntimeError:  # an exception raised before a request existed
            url = None
        host = url.host if url is not None else "the server"
        port = url.port or (443 if url.scheme == "https" else 80) if url is not None else None
        where = f"{host}:{port}" if port else host
        seconds = self.task.request_timeout
        limit = f"within {seconds:g} s (request_timeout)" if seconds else "in time"
        causes = []
        cause: BaseException | None = exc
        while cause is not None and len(causes) < 10:
            causes.append(cause)
            cause = cause.__cause__ or cause.__context__

        def first(kind: type[BaseException]) -> Any:
            return next((c for c in causes if isinstance(c, kind)), None)

        if isinstance(exc, httpx.ConnectTimeout):
            return f"no connection to {where} {limit}"
        if isinstance(exc, httpx.ReadTimeout):
            if self.reading_body:
                return f"{host} stopped sending the response body: nothing more {limit}"
            return f"no response from {host} {limit}"
        if isinstance(exc, httpx.WriteTimeout):
            return f"could not send the request to {host} {limit}"
        if isinstance(exc, httpx.TimeoutException):
            return f"timed out talking to {host}: {exc}"
        if isinstance(exc, httpx.ConnectError):
            verify_error = first(ssl.SSLCertVerificationError)
            if verify_error is not None:
                reason = verify_error.verify_message or _ssl_text(verify_error)
                return f"TLS error with {host}: certificate not trusted: {reason}"
            ssl_error = first(ssl.SSLError)
            if ssl_error is not None:
                return f"TLS error with {host}: {_ssl_text(ssl_error)}"
            dns = first(socket.gaierror)
            if dns is not None:
                return f"cannot resolve host '{host}': {dns.strerror or dns}"
            if first(ConnectionRefusedError) is not None:
                return f"connection refused by {where}"
            failure = next((c for c in reversed(causes) if isinstance(c, OSError)), None)
            if failure is not None and failure.strerror:
                return f"cannot connect to {where}: {failure.strerror}"
            return f"cannot connect to {where}: {exc}"
        if isinstance(exc, httpx.TooManyRedirects):
            return f"too many redirects (last: {display_url(str(url))})"
        if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
            what = "while reading the response body" if self.reading_body else "before a response"
            return f"connection to {host} lost {what}: {str(exc) or type(exc).__name__}"
        if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
            return f"unusable URL {display_url(str(url)) if url else ''}: {exc}"
        if isinstance(exc, httpx.DecodingError):
            return f"cannot decode the response body: {exc}"
        if isinstance(exc, httpx.ProxyError):
            return f"proxy error: {exc}"
        return f"request to {host} failed: {type(exc).__name__}: {exc}"


def _ssl_text(error: BaseException) -> str:
    """'[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)' -> 'wrong version number'"""
    text = re.sub(r"^\[[^\]]*\]\s*", "", str(error))
    text = re.sub(r"\s*\(_ssl\.c:\d+\)$", "", text)
    return text or type(error).__name__
