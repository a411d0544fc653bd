"""Stored end users: create, read, update, list (on store_base.Database)."""

from __future__ import annotations

import secrets
import sqlite3
from typing import Any

from .._timestamps import now as now_timestamp
from .store_base import Conflict, Database, NotFound, RowLayout, _json_text


class EndUserStore:
    """The end users of each tenant."""

    def __init__(self, database: Database) -> None:
        self._database = database

    _ROW = RowLayout(
        ("id", "id"),
        ("external_id", "externalId"),
        ("email", "email"),
        ("name", "name"),
        ("metadata", "metadata"),
        ("status", "status"),
        ("created_at", "createdAt"),
        ("updated_at", "updatedAt"),
        json_keys=("metadata",),
    )

    def get_end_user(self, db: sqlite3.Connection, tenant: int, end_user_id: str) -> dict[str, Any]:
        row = db.execute(
            f"SELECT {self._ROW.columns} FROM end_users WHERE tenant = ? AND id = ?",
            (tenant, end_user_id),
        ).fetchone()
        if row is None:
            raise NotFound(f"No end user with id {end_user_id!r}")
        return self._ROW.answer(row)

    def create_end_user(
        self, tenant: int, external_id: str, email: str | None, name: str | None, metadata: Any
    ) -> dict[str, Any]:
        end_user_id = "eu_" + secrets.token_hex(12)
        now = now_timestamp()
        with self._database.transaction() as db:
            try:
                db.execute(
                    "INSERT INTO end_users (id, tenant, external_id, email, name, metadata, status,"
                    " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'ACTIVE', ?, ?)",
                    (end_user_id, tenant, external_id, email, name, _json_text(metadata), now, now),
                )
            except sqlite3.IntegrityError:
                raise Conflict(f"An end user with external id {external_id!r} exists") from None
            return self.get_end_user(db, tenant, end_user_id)

    def update_end_user(
        self, tenant: int, end_user_id: str, changes: dict[str, Any]
    ) -> dict[str, Any]:
        with self._database.transaction() as db:
            self.get_end_user(db, tenant, end_user_id)
            self._database.update(db, "end_users", tenant, end_user_id, changes)
            return self.get_end_user(db, tenant, end_user_id)

    def set_end_user_status(self, tenant: int, end_user_id: str, status: str) -> dict[str, Any]:
        with self._database.transaction() as db:
            self.get_end_user(db, tenant, end_user_id)
            db.execute(
                "UPDATE end_users SET status = ?, updated_at = ? WHERE tenant = ? AND id = ?",
                (status, now_timestamp(), tenant, end_user_id),
            )
            return self.get_end_user(db, tenant, end_user_id)

    def list_end_users(
        self, tenant: int, status: str | None, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        rows, total = self._database.page(
            "end_users", self._ROW.columns, "created_at, id",
            tenant, [("status", "=", status)], limit, offset,
        )  # fmt: skip
        return [self._ROW.answer(row) for row in rows], total
