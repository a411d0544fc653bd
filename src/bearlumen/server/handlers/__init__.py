"""Route handlers, one module per resource (as `bearlumen.resources` has one per resource).

A handler is a plain blocking function of `(ServerState, ApiRequest)` returning `(status, body)`;
what every route shares (auth, body, replays, errors) is `endpoint.py`'s job.
"""
