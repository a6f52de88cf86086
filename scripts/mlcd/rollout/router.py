"""The nginx configuration of an environment's router (pure: text in, text out).

The router is two nginx instances under one prefix folder:
- the client side (`render_front`) listens on 127.0.0.1:<port> (a Docker host's router
  container: on all its addresses) and never reloads: it keeps
  connections alive and answers pipelined requests, limits connections per client address
  (one client's slow bodies cannot lock others out), times out slow headers and bodies,
  takes request lines and headers up to the model server's 64 KiB, and answers its own
  errors as JSON (`{"error": ...}`); every request goes on to
- the routing side (`render_routes`), reloaded on every change, on a Unix socket the
  client side opens one connection per request to (so a reload never races a kept-alive
  client connection):
  - `single`: every request to one arm (stable, or the new active after a blue/green
    switch);
  - `split`: weighted upstream servers for a canary step (nginx's smooth weighted round
    robin, so a 10 % step sends exactly one request in ten); an inference request
    (``POST /predict``, ``/v2/models/<name>/infer``: idempotent) that an arm failed before
    answering is retried once on the other arm (``proxy_next_upstream ... non_idempotent``);
  - `mirror`: clients get the stable answer only; the inference routes are copied to the
    shadow arm with ``mirror``, whose answers are discarded and never retried.
  Who sees which version (`Routing`, in `split` and `mirror` modes): a request whose
  routing header (``X-MLCD-Version`` by default) says ``canary`` or ``stable`` goes to that
  arm only (testers; in `mirror` mode ``canary`` is the shadow arm, and such a request is not
  mirrored again); a request carrying the sticky key (a header such as a user id) goes to the
  arm its key's bucket falls in: ``split_clients`` hashes the key with the rollout's salt
  (the candidate's version) into [0, 100) and the canary takes the lowest ``weight`` percent,
  so a key that fell to the canary at 10 % is still on it at 50 % (the buckets only grow);
  the other arm is its backup, used only when its own arm failed before answering. Requests
  with neither go by weight.
Every proxied request carries ``X-Request-ID``: the client's when it sent one, else nginx's
``$request_id``; the mirrored copy carries the same id, so the two arms' answers pair up.

`render` returns both configurations in one text (`FRONT_MARKER` between them);
`mlcd.tools.nginx` runs each as its own nginx.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mlcd.tools.nginx import FRONT_MARKER

Mode = Literal["single", "split", "mirror"]
INFERENCE_LOCATIONS = ("= /predict", r"~ ^/v2/models/[^/]+/infer$")
MAX_BODY = "8m"
MAX_HEADER = "64k"  # scripts/mlcd/serve/server.py: _MAX_HEAD_BYTES = 64 KiB
HEADER_BUFFER = "8k"
WORKERS = 2
WORKER_CONNECTIONS = 8192
FRONT_CONNECTIONS = 16384
PER_CLIENT_CONNECTIONS = 512
HEADER_TIMEOUT = "10s"
BODY_TIMEOUT = "10s"
_ERRORS = {
    400: "bad request: the router could not parse it",
    408: "the request (headers or body) did not arrive in time",
    411: "the request has a body and no Content-Length (HTTP/1.0 needs one)",
    413: f"the request body is over the router's limit of {MAX_BODY}B",
    414: f"the request line is over the router's limit of {MAX_HEADER}B",
    429: f"too many connections from this address (at most {PER_CLIENT_CONNECTIONS} at once)",
    494: f"a request header is over the router's limit of {MAX_HEADER}B",
    500: "the router failed",
    502: "no model server answered (the router tried the arms it has)",
    503: "the model is not available",
    504: "the model server did not answer in time",
    505: "the HTTP version is not supported (HTTP/1.0 and HTTP/1.1 are)",
}
# every status nginx itself answers with a page of its own: JSON, like the model server's
FRONT_ERRORS = (400, 408, 411, 413, 414, 429, 494, 500, 502, 503, 504, 505)
ROUTES_ERRORS = (400, 408, 411, 413, 414, 494, 500, 502, 503, 504, 505)


@dataclass(frozen=True)
class Backend:
    port: int
    weight: int = 1
    host: str = "127.0.0.1"  # a container's name when the router runs in a container

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def short(self) -> str:
        return f":{self.port}" if self.host == "127.0.0.1" else self.address


@dataclass(frozen=True)
class Routing:
    """Forced (a header) and sticky (a key's bucket) routing to one arm."""

    header: str | None = "X-MLCD-Version"
    sticky_key: str | None = None
    salt: str = ""  # the buckets' salt: the same for the whole rollout (the candidate's version)

    @staticmethod
    def variable(header: str) -> str:
        """nginx's variable of a request header: X-User-Id → $http_x_user_id."""
        return "$http_" + header.lower().replace("-", "_")

    def salted(self, salt: str) -> Routing:
        return Routing(self.header, self.sticky_key, hashlib.sha256(salt.encode()).hexdigest()[:12])


@dataclass(frozen=True)
class RouterSpec:
    """What the router should do."""

    port: int
    mode: Mode
    primary: tuple[Backend, ...]
    shadow: Backend | None = None
    generation: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    # the address the client side listens on (a router container on a Docker host: all)
    listen: str = "127.0.0.1"
    # the routing side's Unix socket; None: `socket_path(prefix)` (a Docker host's router
    # containers share one in their volume)
    socket: str | None = None
    routing: Routing = field(default_factory=Routing)
    # upstream servers one request may try: the other arm once; more where an arm is
    # several servers (a swarm's tasks, some of them on a node that just died)
    tries: int = 2

    def describe(self) -> str:
        if self.mode == "split":
            total = sum(b.weight for b in self.primary) or 1
            return ", ".join(f"{100 * b.weight // total}% to {b.short}" for b in self.primary)
        if self.mode == "mirror" and self.shadow is not None:
            return f"all to {self.primary[0].short}, mirrored to {self.shadow.short}"
        return f"all to {self.primary[0].short}"


def _upstream(name: str, backends: tuple[Backend, ...], backup: Backend | None = None) -> list[str]:
    lines = [f"  upstream {name} {{"]
    for backend in backends:
        weight = f" weight={backend.weight}" if len(backends) > 1 else ""
        lines.append(f"    server {backend.address}{weight} max_fails=1 fail_timeout=5s;")
    if backup is not None:
        lines.append(f"    server {backup.address} backup;")
    lines += ["    keepalive 32;", "  }"]
    return lines


def _percent(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _arm_routing(spec: RouterSpec) -> list[str]:
    """Upstreams and maps that pick `$mlcd_upstream` per request (split and mirror modes):
    the routing header forces an arm, the sticky key's bucket keeps one, else the weights."""
    routing = spec.routing
    if spec.mode == "split" and len(spec.primary) == 2:
        stable, canary = spec.primary
    elif spec.mode == "mirror" and spec.shadow is not None:
        stable, canary = spec.primary[0], spec.shadow
    else:
        return []
    lines: list[str] = []
    default = "mlcd_primary"
    if routing.header:
        lines += _upstream("mlcd_only_stable", (stable,))
        lines += _upstream("mlcd_only_canary", (canary,))
    if routing.sticky_key and spec.mode == "split":
        total = stable.weight + canary.weight or 1
        share = 100.0 * canary.weight / total
        key = Routing.variable(routing.sticky_key)
        lines += _upstream("mlcd_sticky_stable", (stable,), backup=canary)
        lines += _upstream("mlcd_sticky_canary", (canary,), backup=stable)
        buckets = [f"    {_percent(share)}% mlcd_sticky_canary;"] if share > 0 else []
        lines += [
            # the canary takes the lowest `share` percent of the key's hash: monotonic in
            # the weight, so a key on the canary stays there as the steps grow
            f'  split_clients "{key}/mlcd-{routing.salt}" $mlcd_bucket {{',
            *buckets,
            "    * mlcd_sticky_stable;",
            "  }",
            f'  map {key} $mlcd_sticky {{ default $mlcd_bucket; "" mlcd_primary; }}',
        ]
        default = "$mlcd_sticky"
    forced = Routing.variable(routing.header) if routing.header else None
    if forced:
        lines += [
            f"  map {forced} $mlcd_upstream {{",
            f"    default {default};",
            '    "~*^canary$" mlcd_only_canary;',
            '    "~*^stable$" mlcd_only_stable;',
            "  }",
            f'  map {forced} $mlcd_forced {{ default ""; "~*^(canary|stable)$" 1; }}',
        ]
    else:
        lines += [f"  map $uri $mlcd_upstream {{ default {default}; }}"]
    return lines


def socket_path(prefix: Path) -> Path:
    """Where the routing nginx listens for the front: a Unix socket in a folder every
    nginx worker (they run as `nobody` under root) can reach, named after the prefix."""
    digest = hashlib.sha256(str(prefix.resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"mlcd-router-{digest}.sock"


def _json_errors(statuses: tuple[int, ...], indent: str) -> list[str]:
    """nginx's own error pages as the model server's JSON shape, `{"error": "..."}`."""
    lines = [f"{indent}error_page {code} /_mlcd/error/{code};" for code in statuses]
    for code in statuses:
        shown = 400 if code == 494 else code
        body = json.dumps({"error": _ERRORS[code]}).replace("'", "\\'")
        lines += [
            f"{indent}location = /_mlcd/error/{code} {{",
            f"{indent}  internal;",
            f"{indent}  default_type application/json;",
            f"{indent}  return {shown} '{body}\\n';",
            f"{indent}}}",
        ]
    return lines


def _common_http(p: Path) -> list[str]:
    return [
        "  access_log off;",
        "  server_tokens off;",
        f"  client_body_temp_path {p}/scratch/body;",
        f"  proxy_temp_path {p}/scratch/proxy;",
        f"  fastcgi_temp_path {p}/scratch/fastcgi;",
        f"  uwsgi_temp_path {p}/scratch/uwsgi;",
        f"  scgi_temp_path {p}/scratch/scgi;",
        # bodies stay in memory: workers never need to write under the prefix
        f"  client_max_body_size {MAX_BODY};",
        f"  client_body_buffer_size {MAX_BODY};",
        "  proxy_max_temp_file_size 0;",
        # the model server takes a request line and headers of up to 64 KiB: so does nginx
        f"  client_header_buffer_size {HEADER_BUFFER};",
        f"  large_client_header_buffers 4 {MAX_HEADER};",
    ]


def render_routes(spec: RouterSpec, prefix: Path) -> str:
    """The routing nginx (reloaded on every change): arms, weights, mirror, retries. It
    listens on `socket_path(prefix)` for the front only, one connection per request, so
    a reload never closes a connection some client still means to use."""
    if not spec.primary:
        raise ValueError("a router needs at least one backend")
    if spec.mode == "mirror" and spec.shadow is None:
        raise ValueError("mirror mode needs a shadow backend")
    p = prefix.resolve()
    label_text = " ".join(f"{k}={v}" for k, v in sorted(spec.labels.items()))
    info = (
        f'{{"generation": {spec.generation}, "mode": "{spec.mode}", "routes": "{spec.describe()}"}}'
    )
    lines = [
        f"# Written by mlcd; rewritten on every change. {label_text}".rstrip(),
        f"# generation {spec.generation}: {spec.mode}: {spec.describe()}",
        f"worker_processes {WORKERS};",
        f"pid {p}/nginx.pid;",
        f"error_log {p}/logs/error.log warn;",
        f"events {{ worker_connections {WORKER_CONNECTIONS}; }}",
        "http {",
        *_common_http(p),
        # the front opens a new connection per request: nothing here is kept alive
        "  keepalive_timeout 0;",
        '  map $http_x_request_id $mlcd_request_id { default $http_x_request_id; "" $request_id; }',
        *_upstream("mlcd_primary", spec.primary),
    ]
    if spec.mode == "mirror" and spec.shadow is not None:
        lines += _upstream("mlcd_shadow", (spec.shadow,))
    chooser = _arm_routing(spec)
    lines += chooser
    upstream = "$mlcd_upstream" if chooser else "mlcd_primary"
    lines += [
        "  server {",
        # behind the client side only, on its socket
        f"    listen unix:{spec.socket or socket_path(p)};",
        "    proxy_http_version 1.1;",
        '    proxy_set_header Connection "";',
        "    proxy_set_header Host $host;",
        "    proxy_set_header X-Request-ID $mlcd_request_id;",
        "    proxy_connect_timeout 2s;",
        "    proxy_read_timeout 60s;",
        # a request an arm failed before answering goes to the other arm, once
        "    proxy_next_upstream error timeout;",
        f"    proxy_next_upstream_tries {spec.tries};",
        *_json_errors(ROUTES_ERRORS, "    "),
        "    location = /_mlcd/router {",
        "      default_type application/json;",
        f"      return 200 '{info}\\n';",
        "    }",
    ]
    for where in INFERENCE_LOCATIONS:
        lines += [
            f"    location {where} {{",
            # inference is idempotent (same rows, same answer): a POST the candidate failed
            # before answering is retried on the stable arm, never on the shadow copy
            "      proxy_next_upstream error timeout non_idempotent;",
        ]
        if spec.mode == "mirror":
            lines += ["      mirror /_mlcd/mirror;", "      mirror_request_body on;"]
        lines += [f"      proxy_pass http://{upstream};", "    }"]
    if spec.mode == "mirror":
        lines += [
            "    location = /_mlcd/mirror {",
            "      internal;",
            # a tester's request forced to an arm is not copied (the shadow answered it)
            *(
                ["      if ($mlcd_forced) { return 204; }"]
                if chooser and spec.routing.header
                else []
            ),
            "      proxy_pass http://mlcd_shadow$request_uri;",
            # a client that has its (stable) answer and hangs up must not cancel the copy
            "      proxy_ignore_client_abort on;",
            "      proxy_connect_timeout 1s;",
            "      proxy_read_timeout 10s;",
            "      proxy_next_upstream off;",
            "    }",
        ]
    lines += [
        "    location / {",
        f"      proxy_pass http://{upstream};",
        "    }",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def render_front(
    port: int, prefix: Path, *, listen: str = "127.0.0.1", socket: str | None = None
) -> str:
    """The client-facing nginx on <listen>:<port>, which never reloads: keep-alive and
    pipelining, a connection limit per client address, header and body timeouts, JSON
    error pages; every request goes to the routing nginx on `socket` (by default
    `socket_path(prefix)`). Its folder is <prefix>/front."""
    p = (prefix / "front").resolve()
    lines = [
        "# Written by mlcd: the router's client side (static; the routes are behind it).",
        f"worker_processes {WORKERS};",
        f"worker_rlimit_nofile {4 * FRONT_CONNECTIONS};",
        f"pid {p}/nginx.pid;",
        f"error_log {p}/logs/error.log warn;",
        f"events {{ worker_connections {FRONT_CONNECTIONS}; }}",
        "http {",
        *_common_http(p),
        f"  client_header_timeout {HEADER_TIMEOUT};",
        f"  client_body_timeout {BODY_TIMEOUT};",
        "  send_timeout 30s;",
        "  reset_timedout_connection on;",
        "  keepalive_timeout 65s;",
        "  keepalive_requests 10000;",
        "  limit_conn_zone $binary_remote_addr zone=mlcd_per_client:4m;",
        "  limit_conn_status 429;",
        "  limit_conn_log_level warn;",
        '  map $http_x_request_id $mlcd_request_id { default $http_x_request_id; "" $request_id; }',
        # an HTTP/1.0 request may come without Host: the routing side (HTTP/1.1) needs one
        '  map $host $mlcd_host { default $host; "" localhost; }',
        "  upstream mlcd_routes {",
        f"    server unix:{socket or socket_path(prefix)} max_fails=0;",
        "  }",
        "  server {",
        f"    listen {listen}:{port} backlog=4096;",
        f"    limit_conn mlcd_per_client {PER_CLIENT_CONNECTIONS};",
        "    proxy_http_version 1.1;",
        '    proxy_set_header Connection "";',
        "    proxy_set_header Host $mlcd_host;",
        "    proxy_set_header X-Request-ID $mlcd_request_id;",
        "    proxy_connect_timeout 2s;",
        "    proxy_read_timeout 75s;",
        "    proxy_next_upstream off;",
        *_json_errors(FRONT_ERRORS, "    "),
        "    location / {",
        "      proxy_pass http://mlcd_routes;",
        "    }",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def render(spec: RouterSpec, prefix: Path) -> str:
    """The router's configuration for `spec`, every path under `prefix`: the routing
    nginx's config, then `FRONT_MARKER`, then the client-facing one's
    (`mlcd.tools.nginx.split_config` separates them; each runs as its own nginx)."""
    front = render_front(spec.port, prefix, listen=spec.listen, socket=spec.socket)
    return render_routes(spec, prefix) + FRONT_MARKER + "\n" + front
