"""The nginx configuration of an environment's router (pure: text in, text out).

One nginx per environment, with its own prefix folder, listens on 127.0.0.1:<port>:
- `single`: every request to one arm (stable, or the new active after a blue/green switch);
- `split`: weighted upstream servers for a canary step (nginx's smooth weighted round robin,
  so a 10 % step sends exactly one request in ten); a failing arm is skipped by
  ``proxy_next_upstream`` for requests not yet sent;
- `mirror`: clients get the stable answer only; the idempotent inference routes
  (``POST /predict`` and ``/v2/models/<name>/infer``) are copied to the shadow arm with
  ``mirror``, whose answers are discarded.
Every proxied request carries ``X-Request-ID``: the client's when it sent one, else nginx's
``$request_id``; the mirrored copy carries the same id, so the two arms' answers pair up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Mode = Literal["single", "split", "mirror"]
INFERENCE_LOCATIONS = ("= /predict", r"~ ^/v2/models/[^/]+/infer$")
MAX_BODY = "8m"


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
class RouterSpec:
    """What the router should do."""

    port: int
    mode: Mode
    primary: tuple[Backend, ...]
    shadow: Backend | None = None
    generation: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    listen: str = "127.0.0.1"  # 0.0.0.0 in a router container on a Docker host

    def describe(self) -> str:
        if self.mode == "split":
            total = sum(b.weight for b in self.primary) or 1
            return ", ".join(f"{100 * b.weight // total}% to {b.short}" for b in self.primary)
        if self.mode == "mirror" and self.shadow is not None:
            return f"all to {self.primary[0].short}, mirrored to {self.shadow.short}"
        return f"all to {self.primary[0].short}"


def _upstream(name: str, backends: tuple[Backend, ...]) -> list[str]:
    lines = [f"  upstream {name} {{"]
    for backend in backends:
        weight = f" weight={backend.weight}" if len(backends) > 1 else ""
        lines.append(f"    server {backend.address}{weight} max_fails=1 fail_timeout=5s;")
    lines += ["    keepalive 32;", "  }"]
    return lines


def render(spec: RouterSpec, prefix: Path) -> str:
    """The nginx.conf for `spec`, with every path under `prefix`."""
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
        "worker_processes 1;",
        f"pid {p}/nginx.pid;",
        f"error_log {p}/logs/error.log warn;",
        "events { worker_connections 2048; }",
        "http {",
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
        "  keepalive_timeout 0;  # see router docstring: reloads never race a kept-alive client",
        "  keepalive_requests 100000;",
        '  map $http_x_request_id $mlcd_request_id { default $http_x_request_id; "" $request_id; }',
        *_upstream("mlcd_primary", spec.primary),
    ]
    if spec.mode == "mirror" and spec.shadow is not None:
        lines += _upstream("mlcd_shadow", (spec.shadow,))
    lines += [
        "  server {",
        f"    listen {spec.listen}:{spec.port};",
        "    proxy_http_version 1.1;",
        '    proxy_set_header Connection "";',
        "    proxy_set_header Host $host;",
        "    proxy_set_header X-Request-ID $mlcd_request_id;",
        "    proxy_connect_timeout 2s;",
        "    proxy_read_timeout 60s;",
        "    proxy_next_upstream error timeout;",
        "    location = /_mlcd/router {",
        "      default_type application/json;",
        f"      return 200 '{info}\\n';",
        "    }",
    ]
    if spec.mode == "mirror":
        for where in INFERENCE_LOCATIONS:
            lines += [
                f"    location {where} {{",
                "      mirror /_mlcd/mirror;",
                "      mirror_request_body on;",
                "      proxy_pass http://mlcd_primary;",
                "    }",
            ]
        lines += [
            "    location = /_mlcd/mirror {",
            "      internal;",
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
        "      proxy_pass http://mlcd_primary;",
        "    }",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"
