"""One module per resource of the API; each method describes the `Call` it makes, once, and
runs on `Client` (`HttpCore`) and `AsyncClient` (`AsyncHttpCore`) alike (see `_endpoint.py`)."""

from .cost_attribution import CostAttribution
from .end_users import EndUsers
from .subscriptions import Subscriptions
from .usage import Usage

__all__ = ["CostAttribution", "EndUsers", "Subscriptions", "Usage"]
