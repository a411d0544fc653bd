"""`client.subscriptions`."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional, Union

from .._http import Call
from .._types import Metadata, Subscription, SubscriptionList
from .._validation import optional_text, page, path_id, validated
from .._wire import SubscriptionCreate, SubscriptionUpdate
from ._endpoint import HttpT, Resource, endpoint


class Subscriptions(Resource[HttpT]):
    """Manage subscriptions: which plan an organization is on, and since when."""

    @endpoint
    def create(
        self,
        organization_id: str,
        plan_id: str,
        billing_cycle: str,
        start_date: Union[str, datetime],
        *,
        end_user_id: Optional[str] = None,
        metadata: Optional[Metadata] = None,
    ) -> Call[Subscription]:
        """Create a new subscription (`billing_cycle` is 'monthly' or 'yearly')."""
        body = validated(
            SubscriptionCreate,
            {
                "organization_id": organization_id,
                "plan_id": plan_id,
                "billing_cycle": billing_cycle,
                "start_date": start_date,
                "end_user_id": end_user_id,
                "metadata": metadata,
            },
        )
        return Call("POST", "/v1/subscriptions", body=body)

    @endpoint
    def retrieve(self, subscription_id: str) -> Call[Subscription]:
        """Retrieve a subscription by ID."""
        path = f"/v1/subscriptions/{path_id('subscription_id', subscription_id)}"
        return Call("GET", path)

    @endpoint
    def update(
        self,
        subscription_id: str,
        *,
        plan_id: Optional[str] = None,
        billing_cycle: Optional[str] = None,
        metadata: Optional[Metadata] = None,
        end_date: Union[str, datetime, None] = None,
    ) -> Call[Subscription]:
        """Update a subscription; only the fields given change."""
        path = f"/v1/subscriptions/{path_id('subscription_id', subscription_id)}"
        body = validated(
            SubscriptionUpdate,
            {
                "plan_id": plan_id,
                "billing_cycle": billing_cycle,
                "metadata": metadata,
                "end_date": end_date,
            },
        )
        return Call("PATCH", path, body=body)

    @endpoint
    def cancel(self, subscription_id: str) -> Call[Subscription]:
        """Cancel a subscription; canceling twice is harmless."""
        path = f"/v1/subscriptions/{path_id('subscription_id', subscription_id)}/cancel"
        return Call("POST", path)

    @endpoint
    def list(
        self,
        organization_id: Optional[str] = None,
        limit: Optional[int] = None,
        offset: Optional[int] = None,
    ) -> Call[SubscriptionList]:
        """List subscriptions, optionally of one organization."""
        params: dict[str, Any] = {
            "organizationId": optional_text("organization_id", organization_id),
            **page(limit, offset),
        }
        return Call("GET", "/v1/subscriptions", params=params)
