"""`client.end_users`."""

from __future__ import annotations

from typing import Any, Optional

from .._http import Call
from .._types import EndUserList, EndUserResponse, Metadata
from .._validation import page, path_id, validated
from .._wire import EndUserCreate, EndUserUpdate
from ._endpoint import HttpT, Resource, endpoint


class EndUsers(Resource[HttpT]):
    """Manage end users: the customers of your AI product whose usage you meter."""

    @endpoint
    def create(
        self,
        external_id: str,
        email: Optional[str] = None,
        name: Optional[str] = None,
        metadata: Optional[Metadata] = None,
    ) -> Call[EndUserResponse]:
        """Create a new end user.

        result = client.end_users.create(external_id='user_123', name='AI Startup Inc')
        print(result['endUser']['id'])
        """
        body = validated(
            EndUserCreate,
            {"external_id": external_id, "email": email, "name": name, "metadata": metadata},
        )
        return Call("POST", "/v1/end-users", body=body)

    @endpoint
    def update(
        self,
        end_user_id: str,
        *,
        email: Optional[str] = None,
        name: Optional[str] = None,
        metadata: Optional[Metadata] = None,
    ) -> Call[EndUserResponse]:
        """Update an end user; only the fields given change, and `metadata` replaces the old."""
        path = f"/v1/end-users/{path_id('end_user_id', end_user_id)}"
        body = validated(EndUserUpdate, {"email": email, "name": name, "metadata": metadata})
        return Call("PATCH", path, body=body)

    @endpoint
    def list(
        self,
        status: Optional[str] = None,
        limit: Optional[int] = None,
        offset: Optional[int] = None,
    ) -> Call[EndUserList]:
        """List end users, optionally only those with `status` 'ACTIVE' or 'DEACTIVATED'."""
        params: dict[str, Any] = {
            "status": status,
            **page(limit, offset),
        }
        return Call("GET", "/v1/end-users", params=params)

    @endpoint
    def deactivate(self, end_user_id: str) -> Call[EndUserResponse]:
        """Soft-delete an end user; their usage history is kept."""
        path = f"/v1/end-users/{path_id('end_user_id', end_user_id)}/deactivate"
        return Call("POST", path)

    @endpoint
    def reactivate(self, end_user_id: str) -> Call[EndUserResponse]:
        """Restore a deactivated end user."""
        path = f"/v1/end-users/{path_id('end_user_id', end_user_id)}/reactivate"
        return Call("POST", path)
