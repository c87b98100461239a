"""The `trinity` command: serve, database migrations, bootstrap sites and users, demo data."""

from __future__ import annotations

import argparse
import getpass
import importlib
import os
import sys

from server.settings import Settings


def _session(settings: Settings):  # type: ignore[no-untyped-def]
    from server.core.db import Database
    from server.core.migrate import upgrade

    if settings.auto_migrate:
        upgrade(settings.effective_database_url)
    return Database(settings).session()


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from server.app import create_app
    from server.core.logs import configure
    from server.core.ws_direct import DirectWebSocketProtocol

    if args.demo:
        settings = settings.model_copy(update={"demo": True})
    configure(settings.log_level, settings.log_json)
    app = create_app(settings)
    host = args.host or settings.host
    port = args.port or settings.port
    if settings.demo:
        from server.demo import DEMO_USERS

        users = ", ".join(f"{u} / {p}" for u, p, _, _ in DEMO_USERS)
        print(f"Trinity on http://{host}:{port}  demo users: {users}", flush=True)
    # Our own frame limit answers oversized frames with a typed error; uvicorn's cap is only a backstop.
    uvicorn.run(
        app,
        host=host,
        port=port,
        ws_max_size=max(16 * 1024 * 1024, settings.ws_max_message_bytes * 4),
        log_config=None,
        access_log=False,
        ws_per_message_deflate=settings.ws_per_message_deflate,
        ws=DirectWebSocketProtocol,  # uvicorn's sans-I/O protocol plus the room socket's direct path
    )
    return 0


def cmd_db_upgrade(_args: argparse.Namespace, settings: Settings) -> int:
    from server.core.migrate import upgrade

    upgrade(settings.effective_database_url)
    print(f"database at head: {settings.effective_database_url.split('@')[-1]}")
    return 0


def cmd_site_create(args: argparse.Namespace, settings: Settings) -> int:
    from server.accounts.service import create_site

    with _session(settings) as db:
        site = create_site(db, site_id=args.id, name=args.name or args.id)
    print(f"site {site.id} created")
    return 0


def cmd_user_create(args: argparse.Namespace, settings: Settings) -> int:
    from server.accounts.service import create_user

    password = os.environ.get("TRINITY_NEW_USER_PASSWORD") or getpass.getpass("password: ")
    with _session(settings) as db:
        user = create_user(
            db,
            site_id=args.site,
            username=args.username,
            password=password,
            role=args.role,
            display_name=args.name or "",
            email=args.email,
        )
    print(f"user {user.username} ({user.role} at {user.site_id}) created: {user.id}")
    return 0


def cmd_demo(_args: argparse.Namespace, settings: Settings) -> int:
    from server.demo import seed_demo

    with _session(settings) as db:
        room = seed_demo(db)
    print(f"demo room {room.id}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trinity", description="Trinity server and tools")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--demo", action="store_true", help="seed the demo site, users and room")
    serve.set_defaults(fn=cmd_serve)
    db = sub.add_parser("db", help="database").add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help="apply migrations").set_defaults(fn=cmd_db_upgrade)
    site = sub.add_parser("site", help="sites").add_subparsers(dest="site_command", required=True)
    site_create = site.add_parser("create", help="create a site")
    site_create.add_argument("id")
    site_create.add_argument("--name")
    site_create.set_defaults(fn=cmd_site_create)
    user = sub.add_parser("user", help="users").add_subparsers(dest="user_command", required=True)
    user_create = user.add_parser("create", help="create a user (password from TRINITY_NEW_USER_PASSWORD or a prompt)")
    user_create.add_argument("username")
    user_create.add_argument("--site", required=True)
    user_create.add_argument("--role", required=True)
    user_create.add_argument("--name")
    user_create.add_argument("--email")
    user_create.set_defaults(fn=cmd_user_create)
    sub.add_parser("demo", help="seed the demo site, users and room").set_defaults(fn=cmd_demo)
    from server.room_cli import add_parser as add_room_parser

    add_room_parser(sub)
    for module in ("server.imaging.deid_command", "server.imaging.ct2mesh_command", "server.design.mesh_command"):
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from server.core.errors import TrinityError

    args = build_parser().parse_args(argv)
    settings = Settings()
    try:
        return int(args.fn(args, settings))
    except TrinityError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
