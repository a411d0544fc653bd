"""One module per resource of the API; each method builds a request and calls `HttpCore`."""

from .cost_attribution import CostAttribution
from .end_users import EndUsers
from .subscriptions import Subscriptions
from .usage import Usage

__all__ = ["CostAttribution", "EndUsers", "Subscriptions", "Usage"]
