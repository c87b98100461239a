"""The Docker deployment files (docker/), checked without a Docker engine: no engine runs on the development
machines or in CI, so what would only fail at `docker compose up` is caught here instead."""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.routing import Match

import server
from server.app import WEB_DIST, create_app
from server.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
NGINX = DOCKER / "nginx.conf"

APP_SERVICES = {"app1", "app2"}
EXPECTED_SERVICES = APP_SERVICES | {"migrate", "worker", "redis", "postgres", "proxy"}
# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}
INTERPOLATION = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def dockerfile() -> list[str]:
    """Instructions of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


@pytest.fixture(scope="module")
def nginx() -> str:
    return re.sub(r"#[^\n]*", "", NGINX.read_text())


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return create_app(Settings(data_dir=tmp_path_factory.mktemp("deploy")))


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def interpolate(value: str) -> str:
    """What compose would substitute, with a stand-in for each required variable (a secret)."""

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match.groups()
        if op and op.endswith("-"):
            return arg
        return f"stand-in-{name.lower()}-0123456789abcdef"

    return INTERPOLATION.sub(substitute, value.replace("$$", "\0")).replace("\0", "$")


def command(service: dict[str, Any]) -> list[str] | None:
    cmd = service.get("command")
    return shlex.split(cmd) if isinstance(cmd, str) else cmd


def dockerfile_instructions(lines: list[str], keyword: str) -> list[str]:
    return [line.split(None, 1)[1] for line in lines if line.split(None, 1)[0].upper() == keyword]


def dockerfile_env(lines: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in dockerfile_instructions(lines, "ENV"):
        for token in shlex.split(args):
            if "=" in token:
                key, value = token.split("=", 1)
                env[key] = value
    return env


def dockerfile_cmd(lines: list[str]) -> list[str]:
    return json.loads(dockerfile_instructions(lines, "CMD")[-1])


def app_port(service: dict[str, Any], dockerfile_lines: list[str]) -> int:
    """The port `trinity serve` binds in this service: --port, else TRINITY_PORT, else the default."""
    cmd = command(service) or dockerfile_cmd(dockerfile_lines)
    if "--port" in cmd:
        return int(cmd[cmd.index("--port") + 1])
    env = {**dockerfile_env(dockerfile_lines), **environment(service)}
    if "TRINITY_PORT" in env:
        return int(interpolate(env["TRINITY_PORT"]))
    return int(Settings.model_fields["port"].default)


def upstream_servers(nginx_text: str, name: str = "trinity") -> list[tuple[str, int]]:
    block = re.search(r"upstream\s+" + name + r"\s*\{(.*?)\}", nginx_text, re.S)
    assert block, f"no upstream {name} in nginx.conf"
    return [(host, int(port)) for host, port in re.findall(r"^\s*server\s+([\w.-]+):(\d+)", block.group(1), re.M)]


def nginx_location(nginx_text: str, prefix: str) -> str:
    block = re.search(r"location\s+" + re.escape(prefix) + r"\s*\{(.*?)\}", nginx_text, re.S)
    assert block, f"no location {prefix} in nginx.conf"
    return block.group(1)


def is_route(app: Any, path: str, scope_type: str = "http") -> bool:
    scope = {"type": scope_type, "path": path, "method": "GET", "root_path": "", "headers": [], "query_string": b""}
    return any(route.matches(scope)[0] == Match.FULL for route in app.routes)


def healthcheck_paths(test: list[str] | str) -> list[str]:
    text = test if isinstance(test, str) else " ".join(test)
    return re.findall(r"http://[^/'\"\s]+(/[\w/.-]*)", text)


def built_from_dockerfile(service: dict[str, Any]) -> bool:
    build = service.get("build")
    return isinstance(build, dict) and build.get("dockerfile") == "docker/Dockerfile"


# --- compose.yaml -------------------------------------------------------------------------------------


def test_the_expected_services_exist(services: dict[str, dict[str, Any]]) -> None:
    assert services.keys() >= EXPECTED_SERVICES


def test_every_trinity_variable_is_a_setting(services: dict[str, dict[str, Any]], dockerfile: list[str]) -> None:
    used = {name for svc in services.values() for name in environment(svc) if name.startswith("TRINITY_")}
    used |= {name for name in dockerfile_env(dockerfile) if name.startswith("TRINITY_")}
    assert used, "no TRINITY_* variable found"
    unknown = sorted(name for name in used if name.removeprefix("TRINITY_").lower() not in Settings.model_fields)
    assert not unknown, f"not fields of server.settings.Settings: {unknown}"


@pytest.mark.parametrize("name", sorted(APP_SERVICES | {"worker", "migrate"}))
def test_the_environment_makes_valid_production_settings(
    name: str, services: dict[str, dict[str, Any]], dockerfile: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The values parse (booleans, URLs) and pass the production check, as the container would see them."""
    for key in os.environ:
        if key.startswith("TRINITY_"):
            monkeypatch.delenv(key)
    env = {**dockerfile_env(dockerfile), **environment(services[name])}
    for key, value in env.items():
        if key.startswith("TRINITY_"):
            monkeypatch.setenv(key, interpolate(value))
    settings = Settings()
    assert settings.environment == "production"
    assert settings.database_url.startswith("postgresql://") and "@postgres:5432/" in settings.database_url
    assert settings.redis_url.startswith("redis://redis:6379")
    assert settings.auto_migrate is False  # migrations run once, in the `migrate` service
    assert str(settings.data_dir) == "/data"


def test_secrets_come_from_the_environment(services: dict[str, dict[str, Any]]) -> None:
    for name in APP_SERVICES | {"worker", "migrate"}:
        env = environment(services[name])
        assert re.fullmatch(r"\$\{TRINITY_SECRET_KEY:\?[^}]+\}", env["TRINITY_SECRET_KEY"]), name
        assert "${POSTGRES_PASSWORD:?" in env["TRINITY_DATABASE_URL"], name
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")


def test_worker_migrate_and_apps_share_one_image(services: dict[str, dict[str, Any]]) -> None:
    reference = services["app1"]
    assert built_from_dockerfile(reference)
    for name in APP_SERVICES | {"worker", "migrate"}:
        assert services[name].get("image") == reference.get("image"), name
        assert services[name].get("build") == reference.get("build"), name
    assert (COMPOSE.parent / reference["build"]["context"] / reference["build"]["dockerfile"]).resolve() == DOCKERFILE
    assert command(services["worker"]) == ["celery", "-A", "server.core.jobs_celery", "worker"]


def test_app_services_are_the_ones_running_the_server(services: dict[str, dict[str, Any]]) -> None:
    """An app service runs the image's `trinity serve`; nothing else built from the Dockerfile does."""
    serving = {
        name
        for name, svc in services.items()
        if built_from_dockerfile(svc) and (command(svc) is None or command(svc)[:2] == ["trinity", "serve"])
    }
    assert serving == APP_SERVICES
    names = {services[name].get("container_name") for name in APP_SERVICES}
    assert len(names) == len(APP_SERVICES) and None not in names


def test_migrations_run_once_before_the_apps(services: dict[str, dict[str, Any]]) -> None:
    assert command(services["migrate"]) == ["trinity", "db", "upgrade"]
    assert services["migrate"].get("restart") == "no"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in APP_SERVICES | {"worker"}:
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name


def test_apps_share_the_blob_volume(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    for name in APP_SERVICES | {"worker"}:
        data_dir = environment(services[name])["TRINITY_DATA_DIR"]
        mounts = [v.split(":") for v in services[name]["volumes"]]
        assert any(target == data_dir and source in compose["volumes"] for source, target, *_ in mounts), name


def test_postgres_and_redis(services: dict[str, dict[str, Any]]) -> None:
    assert services["postgres"]["image"] == "postgres:16"
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
    assert services["redis"]["image"] == "redis:7"


def test_app_healthchecks_hit_routes_of_the_app(
    services: dict[str, dict[str, Any]], dockerfile: list[str], app: Any
) -> None:
    for name in APP_SERVICES:
        test = services[name]["healthcheck"]["test"]
        paths = healthcheck_paths(test)
        assert paths, f"{name}: no URL in its healthcheck"
        for path in paths:
            assert is_route(app, path), f"{name}: healthcheck path {path} is not a route of the app"
        ports = {int(port) for port in re.findall(r"http://[^/:'\"\s]+:(\d+)/", " ".join(test))}
        assert ports == {app_port(services[name], dockerfile)}, f"{name}: healthcheck port"


# --- Dockerfile ---------------------------------------------------------------------------------------


def test_dockerfile_healthcheck_path_is_a_route_of_the_app(dockerfile: list[str], app: Any) -> None:
    (healthcheck,) = dockerfile_instructions(dockerfile, "HEALTHCHECK")
    assert healthcheck_paths(healthcheck) == ["/healthz"]
    assert is_route(app, "/healthz")
    assert not is_route(app, "/no-such-path")  # the check above can fail


def test_dockerfile_builds_the_web_client_and_runs_as_non_root(dockerfile: list[str]) -> None:
    bases = dockerfile_instructions(dockerfile, "FROM")
    assert any(base.startswith("node:") for base in bases)
    assert bases[-1].split()[0] == "python:3.11-slim"
    user = dockerfile_instructions(dockerfile, "USER")[-1].split(":")[0]
    assert user not in ("root", "0")
    assert dockerfile_cmd(dockerfile) == ["trinity", "serve", "--host", "0.0.0.0"]
    assert not any(re.search(r"pip install .*\[dev\]", line) for line in dockerfile)


def test_web_dist_lands_where_the_app_serves_it(dockerfile: list[str]) -> None:
    """server/app.py serves web/dist beside the installed `server` package: site-packages/web/dist."""
    relative = WEB_DIST.relative_to(Path(server.__file__).resolve().parent.parent).as_posix()
    copies = [line.split()[-1] for line in dockerfile_instructions(dockerfile, "COPY") if "web/dist" in line]
    assert any(dest.endswith(f"/site-packages/{relative}") for dest in copies), copies


def test_exposed_port_is_the_app_port(dockerfile: list[str], services: dict[str, dict[str, Any]]) -> None:
    exposed = {int(p.split("/")[0]) for args in dockerfile_instructions(dockerfile, "EXPOSE") for p in args.split()}
    assert {app_port(services[name], dockerfile) for name in APP_SERVICES} <= exposed


# --- nginx.conf ---------------------------------------------------------------------------------------


def test_nginx_is_mounted_into_the_proxy(services: dict[str, dict[str, Any]]) -> None:
    proxy = services["proxy"]
    assert proxy["image"].startswith("nginx:1.27")
    assert "8080:80" in [str(p) for p in proxy["ports"]]
    mounts = [v.split(":") for v in proxy["volumes"]]
    assert any((COMPOSE.parent / src).resolve() == NGINX and dst == "/etc/nginx/nginx.conf" for src, dst, *_ in mounts)


def test_nginx_upstream_is_the_app_services(nginx: str, services: dict[str, dict[str, Any]]) -> None:
    assert {host for host, _ in upstream_servers(nginx)} == APP_SERVICES
    assert {host for host, _ in upstream_servers(nginx, "trinity_rooms")} == APP_SERVICES


def test_nginx_routes_a_rooms_sockets_by_room_id(nginx: str) -> None:
    block = re.search(r"upstream\s+trinity_rooms\s*\{(.*?)\}", nginx, re.S)
    assert block and re.search(r"hash\s+\$uri\s+consistent;", block.group(1))


def test_nginx_upstream_port_is_the_port_the_apps_listen_on(
    nginx: str, services: dict[str, dict[str, Any]], dockerfile: list[str]
) -> None:
    for host, port in [*upstream_servers(nginx), *upstream_servers(nginx, "trinity_rooms")]:
        assert port == app_port(services[host], dockerfile), host


def test_nginx_proxies_websockets(nginx: str, app: Any) -> None:
    ws = nginx_location(nginx, "/ws/")
    assert re.search(r"proxy_pass\s+http://trinity_rooms;", ws)
    assert re.search(r"proxy_http_version\s+1\.1;", ws)
    assert re.search(r"proxy_set_header\s+Upgrade\s+\$http_upgrade;", ws)
    assert re.search(r"proxy_set_header\s+Connection\s+\$connection_upgrade;", ws)
    assert re.search(r"map\s+\$http_upgrade\s+\$connection_upgrade", nginx)
    timeout = re.search(r"proxy_read_timeout\s+(\d+)([smh]?);", ws)
    assert timeout, "WebSockets need a long proxy_read_timeout"
    seconds = int(timeout.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[timeout.group(2)]
    assert seconds >= 600
    assert is_route(app, "/ws/rooms/some-room", "websocket")  # the room socket lives under /ws/


def test_nginx_forwards_client_headers_in_every_location(nginx: str) -> None:
    """proxy_set_header in a location replaces the inherited ones, so each location sets them all."""
    for prefix in ("/ws/", "/"):
        block = nginx_location(nginx, prefix)
        for header in ("Host", "X-Forwarded-For", "X-Forwarded-Proto"):
            assert re.search(rf"proxy_set_header\s+{header}\s", block), f"{prefix}: {header}"


def test_nginx_body_limit_does_not_undercut_the_app(nginx: str) -> None:
    size = re.search(r"client_max_body_size\s+(\d+)([kmg]?);", nginx)
    assert size
    limit = int(size.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[size.group(2)]
    assert limit >= Settings.model_fields["max_request_bytes"].default
