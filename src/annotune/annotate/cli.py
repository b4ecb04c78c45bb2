"""The ``annotune workbench`` command group.

Commands that change the database (users, projects, import, suggest, backup) work on it directly, on the
machine that holds it (``--db``, default ``$ANNOTUNE_DB`` or a SQLite file in the annotune home). ``stats``
and ``export`` can also go through a running server with ``--url`` and an API token (``ANNOTUNE_TOKEN``).
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time

from annotune.config import at_least_one
from annotune.errors import AnnotuneError

TOKEN_COMMANDS = ("create", "list", "revoke")


def open_db(args: argparse.Namespace, create: bool = False):
    """The workbench database; only the commands that start one (serve, user add, project create, restore)
    create it, so a mistyped path elsewhere is an error instead of a new empty database."""
    from annotune.annotate.db import open_database

    return open_database(args.db, create=create)


def api_client(args: argparse.Namespace):
    """The API client for ``--url``, with the token from $ANNOTUNE_TOKEN."""
    import os

    from annotune.annotate.client import TOKEN_ENV, Client

    if args.db:
        raise AnnotuneError("give either --url (a running workbench) or --db (the database itself), not both")
    if not os.environ.get(TOKEN_ENV):
        raise AnnotuneError(f"--url needs an API token in ${TOKEN_ENV}; create one with "
                            "`annotune workbench token create NAME` and export it")
    return Client(args.url)


def _add_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", help="database URL: sqlite:///PATH or postgresql://USER:PASS@HOST/DB "
                                     "(default: $ANNOTUNE_DB, else workbench.db in the annotune home)")


def _add_remote(parser: argparse.ArgumentParser) -> None:
    _add_db(parser)
    parser.add_argument("--url", help="talk to a running workbench at this URL instead of the database "
                                      "(API token from $ANNOTUNE_TOKEN)")


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    if not sys.stdin.isatty():
        raise AnnotuneError("no terminal to ask for the password; pipe it in with --password-stdin")
    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise AnnotuneError("the two passwords differ; nothing was changed")
    return first


# --------------------------------------------------------------------------------------------- handlers


def run_serve(args: argparse.Namespace) -> int:
    import dataclasses
    import os

    import uvicorn

    from annotune.annotate.app import SETTINGS_ENV, Settings, create_app
    from annotune.annotate.db import DB_ENV
    from annotune.web import check_port_free

    check_port_free(args.host, args.port)
    settings = Settings(lease_seconds=args.lease_minutes * 60, max_upload=args.max_upload_mb * 1024 * 1024,
                        secure_cookies=args.secure_cookies)
    db = open_db(args, create=True)  # migrated here, once, before any worker starts
    where = f"http://{args.host}:{args.port} (database {db.display_url}"
    if args.workers == 1:
        print(f"workbench on {where})", flush=True)
        uvicorn.run(create_app(settings=settings, db=db), host=args.host, port=args.port, log_level="warning",
                    access_log=False)
        return 0
    db.dispose()
    os.environ[DB_ENV] = db.url
    os.environ[SETTINGS_ENV] = json.dumps(dataclasses.asdict(settings))
    print(f"workbench on {where}, {args.workers} worker processes)", flush=True)
    uvicorn.run("annotune.annotate.app:app_from_environment", factory=True, workers=args.workers, host=args.host,
                port=args.port, log_level="warning", access_log=False)
    return 0


def run_user(args: argparse.Namespace) -> int:
    from annotune.annotate import store

    command = args.user_command
    db = open_db(args, create=command == "add")
    if command == "list":
        with db.transaction(readonly=True) as conn:
            users = store.users_overview(conn)
        for user in users:
            print(f"{user['name']}\t{user['role']}\t{'disabled' if user['disabled'] else 'active'}\t"
                  f"{user['tokens']} token(s)")
        if not users:
            print("no users yet; add one with `annotune workbench user add NAME --role ROLE`", file=sys.stderr)
        return 0
    password = _read_password(args) if command in ("add", "password") else ""
    with db.transaction() as conn:
        if command == "add":
            user = store.add_user(conn, args.name, args.role, password)
            print(f"added {user.name} ({user.role})")
            return 0
        user = store.find_user(conn, args.name)
        if command == "password":
            store.set_password(conn, args.name, password)
            message = "password changed; their sessions are logged out and their API tokens revoked"
        elif command == "role":
            store.set_role(conn, user, args.role)
            message = f"role is now {args.role}"
        elif command in ("disable", "enable"):
            store.set_disabled(conn, user, command == "disable")
            message = ("disabled: cannot log in, sessions ended, API tokens stopped" if command == "disable"
                       else "enabled")
        else:
            store.delete_user(conn, user)
            message = "deleted, with their tokens, sessions and memberships"
    print(f"{args.name}: {message} (a running server notices within {store.AUTH_CACHE_SECONDS:g} s)")
    return 0


def run_token(args: argparse.Namespace) -> int:
    from annotune.annotate import store

    command, name = args.command, args.name
    if command not in TOKEN_COMMANDS:  # the older form: `token NAME`
        command, name = "create", command
    if not name:
        raise AnnotuneError(f"name the user: `annotune workbench token {command} NAME`")
    with open_db(args).transaction() as conn:
        user = store.find_user(conn, name)
        if command == "list":
            for token in store.list_tokens(conn, user):
                expires = "never" if token["expires_at"] is None else time.strftime(
                    "%Y-%m-%d %H:%M", time.localtime(token["expires_at"]))
                state = "expired" if token["expired"] else "expires"
                print(f"{token['id']}\t{token['label'] or '-'}\t{state} {expires}")
            return 0
        if command == "revoke":
            if (args.id is None) == (not args.all):
                raise AnnotuneError("give the token's --id (from `token list`) or --all")
            count = store.revoke_tokens(conn, user, args.id)
            print(f"revoked {count} token(s) of {name} (a running server notices within "
                  f"{store.AUTH_CACHE_SECONDS:g} s)")
            return 0
        token = store.create_token(conn, user, args.label or "", None if args.never_expires else args.days)
    print(token)
    lifetime = "never expires" if args.never_expires else f"valid {args.days:g} days"
    print(f"API token for {name} ({lifetime}): shown once, keep it secret (export ANNOTUNE_TOKEN=...)",
          file=sys.stderr)
    return 0


def _read_guidelines(path: str | None) -> str:
    if not path:
        return ""
    from annotune.dataset.files import read_user_file

    return read_user_file(path, "--guidelines", "write them as a Markdown file first, or leave out --guidelines")


def run_project(args: argparse.Namespace) -> int:
    from annotune.annotate import store

    guidelines = _read_guidelines(getattr(args, "guidelines", None))
    with open_db(args, create=args.project_command == "create").transaction() as conn:
        if args.project_command == "create":
            labels = [label for label in (args.labels or "").split(",") if label.strip()]
            project = store.create_project(conn, args.name, args.type, guidelines, labels, args.overlap,
                                           args.self_review)
            print(f"created project {project.name} ({project.task_type}, {project.overlap} annotation(s) per record)")
        elif args.project_command == "add-member":
            project = store.find_project(conn, args.project)
            for name in args.users:
                added = store.add_member(conn, project, store.find_user(conn, name))
                print(f"{name}: {'added to' if added else 'already in'} {project.name}")
        elif args.project_command == "remove-member":
            project = store.find_project(conn, args.project)
            for name in args.users:
                removed = store.remove_member(conn, project, store.find_user(conn, name))
                print(f"{name}: {'removed from' if removed else 'not in'} {project.name}")
        else:
            for project in store.projects_for(conn, None):
                print(f"{project.name}\t{project.task_type}\toverlap {project.overlap}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from annotune.annotate import importing, store

    with open_db(args).transaction() as conn:
        project = store.find_project(conn, args.project)
        result = importing.import_file(conn, project, args.file, args.kind, args.format)
    drafts = f"; {result.drafts} wait for drafts (`annotune workbench suggest {args.project} --model ...`)" \
        if result.drafts else ""
    print(f"imported {result.added} record(s) into {args.project} ({result.already_there} already there){drafts}")
    return 0


def run_suggest(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from annotune.annotate.suggest import suggest

    with tqdm(total=0, unit="record", desc="drafting", disable=args.no_progress) as bar:

        def on_batch(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        counts = suggest(open_db(args), args.project, args.model, batch_size=args.batch_size, limit=args.limit,
                         max_new_tokens=args.max_new_tokens, on_batch=on_batch)
    print(f"{counts['filled']} of {counts['records']} record(s) got drafts from {args.model}"
          + (f"; {counts['unusable']} replies were unusable (left as they were)" if counts["unusable"] else ""))
    return 0


def run_stats(args: argparse.Namespace) -> int:
    from annotune.annotate import stats, store

    if args.url:
        result = api_client(args).stats(args.project)
    else:
        with open_db(args).transaction() as conn:
            result = stats.project_stats(conn, store.find_project(conn, args.project))
    print(json.dumps(result, indent=2) if args.json else stats.format_stats(result))
    return 0


def run_export(args: argparse.Namespace) -> int:
    from annotune.annotate import exporting, store

    if args.url:
        count = api_client(args).export(args.project, args.to, args.out, args.include_pending, args.min_score,
                                        args.changed_only)
    else:
        with open_db(args).transaction() as conn:
            project = store.find_project(conn, args.project)
            count = exporting.export_project(conn, project, args.to, args.out, args.include_pending, args.min_score,
                                             args.changed_only)
    print(f"wrote {count} example(s) to {args.out} ({args.to}); check it with `annotune data validate {args.out}`")
    return 0


def run_backup(args: argparse.Namespace) -> int:
    from annotune.annotate import backup

    counts = backup.backup(open_db(args), args.out)
    print(f"backed up {sum(counts.values())} rows to {args.out} "
          f"({', '.join(f'{n} {k}' for k, n in counts.items())})")
    return 0


def run_restore(args: argparse.Namespace) -> int:
    from annotune.annotate import backup

    backup.open_backup(args.file)[0].close()  # a clear error before an empty database is created
    counts = backup.restore(open_db(args, create=True), args.file)
    print(f"restored {sum(counts.values())} rows from {args.file}")
    return 0


# ----------------------------------------------------------------------------------------- the parser


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port from 1 to 65535, got {text}")
    return value


def _minutes(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 minutes, got {text}")
    return value


def _add_people(commands: argparse._SubParsersAction) -> None:
    from annotune.annotate.schema import ROLES
    from annotune.annotate.store import TOKEN_DAYS

    user = commands.add_parser("user", help="add, change, disable or delete users; list them")
    user_commands = user.add_subparsers(dest="user_command", metavar="COMMAND", required=True)
    add = user_commands.add_parser("add", help="add a user (asks for the password)")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=ROLES)
    change = user_commands.add_parser("password", help="set a new password (logs the user out everywhere and "
                                                       "revokes their API tokens)")
    change.add_argument("name")
    for parser in (add, change):
        parser.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    role = user_commands.add_parser("role", help="change a user's role")
    role.add_argument("name")
    role.add_argument("role", choices=ROLES)
    simple = {"disable": "stop a user: no login, sessions ended, API tokens stop working (annotations stay)",
              "enable": "let a disabled user log in again (their unexpired tokens work again)",
              "delete": "delete a user who wrote and reviewed nothing (else disable them)"}
    others = [user_commands.add_parser(name, help=text) for name, text in simple.items()]
    for parser in others:
        parser.add_argument("name")
    listing = user_commands.add_parser("list", help="list users, roles, state and live API tokens")
    for parser in (add, change, role, listing, *others):
        _add_db(parser)
    user.set_defaults(func=run_user)

    token = commands.add_parser("token", help="API tokens (for the CLI and scripts): create, list, revoke",
                                description="`token create NAME` prints a new token (`token NAME` does the "
                                            "same); `token list NAME`; `token revoke NAME --id ID | --all`.")
    token.add_argument("command", metavar="create|list|revoke", help="what to do (or a user's name: create)")
    token.add_argument("name", nargs="?", help="the user")
    token.add_argument("--label", help="create: what the token is for")
    token.add_argument("--days", type=float, default=TOKEN_DAYS,
                       help=f"create: days until it expires (default {TOKEN_DAYS})")
    token.add_argument("--never-expires", action="store_true", help="create: valid until revoked")
    token.add_argument("--id", type=int, help="revoke: the token (its id from `token list`)")
    token.add_argument("--all", action="store_true", help="revoke: every token of the user")
    _add_db(token)
    token.set_defaults(func=run_token)


def _add_projects(commands: argparse._SubParsersAction) -> None:
    from annotune.annotate.tasks import TASK_TYPES

    project = commands.add_parser("project", help="create projects and add members")
    project_commands = project.add_subparsers(dest="project_command", metavar="COMMAND", required=True)
    create = project_commands.add_parser("create", help="create a project")
    create.add_argument("name")
    create.add_argument("--type", required=True, choices=TASK_TYPES, help="task type")
    create.add_argument("--guidelines", help="Markdown file with the annotation guidelines")
    create.add_argument("--labels", help="comma-separated labels (label projects)")
    create.add_argument("--overlap", type=at_least_one, default=1, help="annotations each record needs (default 1)")
    create.add_argument("--self-review", action="store_true",
                        help="let reviewers accept or reject their own annotations (default: someone else reviews)")
    members = project_commands.add_parser("add-member", help="let users see and work on a project")
    removal = project_commands.add_parser("remove-member", help="take users out of a project (annotations stay)")
    for parser in (members, removal):
        parser.add_argument("project")
        parser.add_argument("users", nargs="+")
    listing = project_commands.add_parser("list", help="list projects")
    for parser in (create, members, removal, listing):
        _add_db(parser)
    project.set_defaults(func=run_project)


def _add_data(commands: argparse._SubParsersAction) -> None:
    from annotune.annotate.exporting import EXPORT_FORMATS
    from annotune.annotate.importing import KINDS
    from annotune.cli import add_progress_argument
    from annotune.dataset.formats import FORMATS

    imp = commands.add_parser("import", help="import chunks, conversations or model answers into a project")
    imp.add_argument("project")
    imp.add_argument("file")
    imp.add_argument("--kind", choices=KINDS, default="auto", help="what the file holds (default: detected)")
    imp.add_argument("--format", choices=FORMATS, help="dataset format of a conversations file (default: detected)")
    _add_db(imp)
    imp.set_defaults(func=run_import)

    sug = commands.add_parser("suggest", help="let a model draft answers for annotators to correct")
    sug.add_argument("project")
    sug.add_argument("--model", required=True, help="hub id, folder, GGUF file, run folder or smollm2-135m")
    sug.add_argument("--batch-size", type=at_least_one, default=8)
    sug.add_argument("--limit", type=at_least_one, help="draft at most this many records")
    sug.add_argument("--max-new-tokens", type=at_least_one, default=160)
    add_progress_argument(sug)
    _add_db(sug)
    sug.set_defaults(func=run_suggest)

    st = commands.add_parser("stats", help="progress and agreement of a project")
    st.add_argument("project")
    st.add_argument("--json", action="store_true", help="print JSON")
    _add_remote(st)
    st.set_defaults(func=run_stats)

    exp = commands.add_parser("export", help="write reviewed annotations as training data")
    exp.add_argument("project")
    exp.add_argument("--to", required=True, choices=EXPORT_FORMATS)
    exp.add_argument("--out", required=True, help="file to write (replaced atomically)")
    exp.add_argument("--include-pending", action="store_true", help="also export annotations not reviewed yet")
    exp.add_argument("--changed-only", action="store_true",
                     help="write and correct projects: leave out model drafts submitted without a change")
    exp.add_argument("--min-score", type=float, help="rate projects exported as openai/alpaca/sharegpt: lowest "
                                                      "mean score kept (default 4)")
    _add_remote(exp)
    exp.set_defaults(func=run_export)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``workbench`` and its commands to the top-level parser."""
    wb = subparsers.add_parser("workbench", help="the team annotation workbench (web app, users, import, export)")
    commands = wb.add_subparsers(dest="workbench_command", metavar="COMMAND", required=True)
    serve = commands.add_parser("serve", help="run the web app")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for every interface)")
    serve.add_argument("--port", type=_port, default=8000)
    serve.add_argument("--lease-minutes", type=_minutes, default=30, help="how long a task stays reserved")
    serve.add_argument("--max-upload-mb", type=at_least_one, default=20, help="largest request body")
    serve.add_argument("--secure-cookies", action="store_true", help="set when users reach it over HTTPS")
    serve.add_argument("--workers", type=at_least_one, default=1,
                       help="server processes (more serve more people at once; up to one per CPU core)")
    _add_db(serve)
    serve.set_defaults(func=run_serve)
    _add_people(commands)
    _add_projects(commands)
    _add_data(commands)
    for name, func, help_text in (("backup", run_backup, "write every table to a JSONL backup file"),
                                  ("restore", run_restore, "load a backup into an empty database")):
        parser = commands.add_parser(name, help=help_text)
        parser.add_argument("out" if name == "backup" else "file")
        _add_db(parser)
        parser.set_defaults(func=func)

