"""Stored subscriptions: create, read, update, cancel, list (on store_base.Database)."""

from __future__ import annotations

import secrets
import sqlite3
from typing import Any

from .._timestamps import now as now_timestamp
from .end_user_store import EndUserStore
from .store_base import Database, NotFound, RowLayout, _json_text


class SubscriptionStore:
    """The subscriptions of each tenant; a subscription may name an end user, who must exist
    (asked of the end users' store)."""

    def __init__(self, database: Database, end_users: EndUserStore) -> None:
        self._database = database
        self._end_users = end_users

    _ROW = RowLayout(
        ("id", "id"),
        ("organization_id", "organizationId"),
        ("plan_id", "planId"),
        ("billing_cycle", "billingCycle"),
        ("status", "status"),
        ("start_date", "startDate"),
        ("end_date", "endDate"),
        ("canceled_at", "canceledAt"),
        ("end_user_id", "endUserId"),
        ("metadata", "metadata"),
        ("created_at", "createdAt"),
        ("updated_at", "updatedAt"),
        json_keys=("metadata",),
    )

    def _get_subscription(
        self, db: sqlite3.Connection, tenant: int, subscription_id: str
    ) -> dict[str, Any]:
        row = db.execute(
            f"SELECT {self._ROW.columns} FROM subscriptions WHERE tenant = ? AND id = ?",
            (tenant, subscription_id),
        ).fetchone()
        if row is None:
            raise NotFound(f"No subscription with id {subscription_id!r}")
        return self._ROW.answer(row)

    def create_subscription(self, tenant: int, fields: dict[str, Any]) -> dict[str, Any]:
        subscription_id = "sub_" + secrets.token_hex(12)
        now = now_timestamp()
        with self._database.transaction() as db:
            end_user_id = fields.get("end_user_id")
            if end_user_id is not None:
                self._end_users.get_end_user(db, tenant, end_user_id)
            db.execute(
                "INSERT INTO subscriptions (id, tenant, organization_id, plan_id, billing_cycle,"
                " status, start_date, end_user_id, metadata, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, 'active', ?, ?, ?, ?, ?)",
                (
                    subscription_id,
                    tenant,
                    fields["organization_id"],
                    fields["plan_id"],
                    fields["billing_cycle"],
                    fields["start_date"],
                    end_user_id,
                    _json_text(fields.get("metadata")),
                    now,
                    now,
                ),
            )
            return self._get_subscription(db, tenant, subscription_id)

    def get_subscription(self, tenant: int, subscription_id: str) -> dict[str, Any]:
        with self._database.locked() as db:
            return self._get_subscription(db, tenant, subscription_id)

    def update_subscription(
        self, tenant: int, subscription_id: str, changes: dict[str, Any]
    ) -> dict[str, Any]:
        with self._database.transaction() as db:
            self._get_subscription(db, tenant, subscription_id)
            self._database.update(db, "subscriptions", tenant, subscription_id, changes)
            return self._get_subscription(db, tenant, subscription_id)

    def cancel_subscription(self, tenant: int, subscription_id: str) -> dict[str, Any]:
        with self._database.transaction() as db:
            current = self._get_subscription(db, tenant, subscription_id)
            if current["status"] != "canceled":
                now = now_timestamp()
                db.execute(
                    "UPDATE subscriptions SET status = 'canceled', canceled_at = ?, updated_at = ?"
                    " WHERE tenant = ? AND id = ?",
                    (now, now, tenant, subscription_id),
                )
            return self._get_subscription(db, tenant, subscription_id)

    def list_subscriptions(
        self, tenant: int, organization_id: str | None, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        rows, total = self._database.page(
            "subscriptions", self._ROW.columns, "created_at, id",
            tenant, [("organization_id", "=", organization_id)], limit, offset,
        )  # fmt: skip
        return [self._ROW.answer(row) for row in rows], total
