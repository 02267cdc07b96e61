"""``claims desk`` and ``claims operators add|disable``: the review desk and who may sign in to it.

Passwords are read from the terminal (prompted twice, not echoed) or, when standard input is not
a terminal (automation, tests), from its first line; never from an option, which would show in
the process list and the shell's history.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from claims import options
from claims.options import Landing, Outbox, Warehouse, exit_codes, settings_from

operators = typer.Typer(
    name="operators",
    help="Who may sign in to the review desk: add an operator, disable one.",
    no_args_is_help=True,
)

Name = Annotated[str, typer.Argument(help="The operator's login (e.g. liu.wei).")]


def _password() -> str:
    if sys.stdin.isatty():
        return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))
    return sys.stdin.readline().rstrip("\r\n")


@operators.command()
def add(
    name: Name,
    role: Annotated[
        str,
        typer.Option(
            "--role",
            help="reviewer (decides; first approval above the limit), approver (also gives "
            "the second approval), auditor (reads only).",
        ),
    ],
    landing: Landing = None,
    warehouse: Warehouse = None,
    outbox: Outbox = None,
) -> None:
    """Add an operator; the password is asked for twice and stored as a scrypt hash."""
    from storage.desk import ROLES, DeskError, add_operator, check_name, find_operator

    with exit_codes():
        settings = settings_from(landing, warehouse, outbox)
        check_name(name)
        if role not in ROLES:
            raise DeskError(f"--role must be one of {', '.join(ROLES)}")
        if find_operator(settings.warehouse, name) is not None:  # before asking for a password
            raise DeskError(f"operator {name} already exists")
        add_operator(
            settings.warehouse, name, role, _password(), lock_timeout_s=settings.lock_timeout_s
        )
        options.console.print(f"operator {name} added ({role})", highlight=False, markup=False)


@operators.command()
def disable(
    name: Name,
    landing: Landing = None,
    warehouse: Warehouse = None,
    outbox: Outbox = None,
) -> None:
    """Disable an operator: no sign-in; an open session ends at its next request."""
    from storage.desk import disable_operator

    with exit_codes():
        settings = settings_from(landing, warehouse, outbox)
        disable_operator(settings.warehouse, name, lock_timeout_s=settings.lock_timeout_s)
        options.console.print(f"operator {name} disabled", highlight=False, markup=False)


def desk(
    host: Annotated[
        str, typer.Option(help="Address to bind; keep 127.0.0.1 and put a TLS proxy in front.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    landing: Landing = None,
    warehouse: Warehouse = None,
    outbox: Outbox = None,
) -> None:
    """The review desk: web pages where signed-in operators decide review items."""
    from config.settings import ConfigError

    with exit_codes():
        settings = settings_from(landing, warehouse, outbox)
        if not settings.warehouse.exists():
            raise ConfigError(f"no warehouse at {settings.warehouse}: run `claims run` first")
        if not 0 < port < 65536:
            raise ConfigError("--port must be between 1 and 65535")
        from claims.desk.app import serve

        if host not in ("127.0.0.1", "localhost", "::1"):
            options.err.print(
                f"warning: serving plain HTTP on {host}: passwords and personal data cross the "
                "network unencrypted. Bind 127.0.0.1 and put a TLS proxy in front (README).",
                highlight=False,
                markup=False,
            )
        options.err.print(
            f"review desk on http://{host}:{port}/ (Ctrl-C stops it)", highlight=False, markup=False
        )
        serve(settings, host, port)


def register(app: typer.Typer) -> None:
    """Add ``claims desk`` and ``claims operators`` to the command line."""
    app.add_typer(operators, name="operators")
    app.command("desk")(desk)
