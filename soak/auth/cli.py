"""`soak token create|list|revoke`: works on the store directly, so that the first operator token needs none."""

from __future__ import annotations

import getpass
from typing import Annotated

import typer
from pydantic import ValidationError

from soak.auth import service
from soak.auth.models import Role
from soak.auth.schemas import Outcome, Principal, TokenIn

app = typer.Typer(help="Access tokens: issue, list, revoke (on SOAK_DATABASE_URL directly).", no_args_is_help=True)


def _local_operator() -> Principal:
    """Whoever reaches the store directly holds every right; the audit log names their login."""
    try:
        login = getpass.getuser()
    except (KeyError, OSError):  # no login name in the environment nor in the password database (a container)
        login = "unknown"
    return Principal(token_id=None, name=f"local:{login}"[:64], role=Role.OPERATOR)


def _option_problems(error: ValidationError) -> str:
    lines = []
    for item in error.errors(include_url=False):
        message = str(item["msg"]).removeprefix("Value error, ")
        lines.append(f"--{str(item['loc'][0]).replace('_', '-')}: {message}" if item["loc"] else f"--{message}")
    return "; ".join(lines)


@app.command()
def create(
    role: Annotated[Role, typer.Option(help="operator: everything; viewer: read; agent: push for one node")],
    node: Annotated[str | None, typer.Option(help="agent tokens: the node it may register and push for")] = None,
    name: Annotated[str | None, typer.Option(help="who holds it (default: the role, and the node)")] = None,
    expires_in_days: Annotated[float | None, typer.Option(help="days until it stops working (default never)")] = None,
) -> None:
    """Issue a token and print it once: the store keeps only its SHA-256 digest."""
    from soak.cli import _fail, _store_session, console

    try:
        token_in = TokenIn(
            name=name or (f"{role.value} {node}"[:64] if node else role.value),
            role=role,
            node=node,
            expires_in_days=expires_in_days,
        )
    except ValidationError as error:
        raise _fail(_option_problems(error)) from None
    with _store_session() as session:
        token, secret = service.create_token(session=session, token_in=token_in)
        service.record(
            session=session,
            principal=_local_operator(),
            action="token.create",
            outcome=Outcome.OK,
            target=f"token {token.id} ({token.role}{f' for node {token.node}' if token.node else ''})",
        )
    expiry = f", expires {token.expires_at:%Y-%m-%d %H:%M} UTC" if token.expires_at else ""
    console.print(f"token {token.id} [bold]{token.name}[/] ({token.role}{expiry}); shown once, store it now:")
    console.print(secret, markup=False, highlight=False, soft_wrap=True)


@app.command("list")
def list_tokens() -> None:
    """Every token issued: id, name, role, node, state (never the secrets)."""
    from rich.table import Table

    from soak.cli import _store_session, console
    from soak.db import utcnow

    table = Table(title="tokens")
    for column in ("id", "name", "role", "node", "created (UTC)", "state"):
        table.add_column(column)
    with _store_session() as session:
        now = utcnow()
        for token in service.list_tokens(session=session):
            if token.revoked_at is not None:
                state = f"revoked {token.revoked_at:%Y-%m-%d %H:%M}"
            elif token.expires_at is not None and token.expires_at <= now:
                state = f"expired {token.expires_at:%Y-%m-%d %H:%M}"
            else:
                state = "active" + (f" until {token.expires_at:%Y-%m-%d %H:%M}" if token.expires_at else "")
            table.add_row(
                str(token.id), token.name, token.role, token.node or "", f"{token.created_at:%Y-%m-%d %H:%M}", state
            )
    console.print(table)


@app.command()
def revoke(token_id: Annotated[int, typer.Argument(help="the id `soak token list` shows")]) -> None:
    """Revoke a token: the controller refuses it from the next request on."""
    from soak.cli import _fail, _store_session, console

    with _store_session() as session:
        try:
            service.revoke_token(session=session, token_id=token_id)
        except service.TokenNotFound as error:
            raise _fail(str(error)) from None
        service.record(
            session=session,
            principal=_local_operator(),
            action="token.revoke",
            outcome=Outcome.OK,
            target=f"token {token_id}",
        )
    console.print(f"token {token_id} revoked")
