"""Defaults, in one place."""

DEFAULT_BASE_URL = "https://api.bearlumen.com"
DEFAULT_TIMEOUT = 30.0  # seconds, per HTTP attempt
DEFAULT_MAX_RETRIES = 3  # extra attempts of a synchronous call
INITIAL_RETRY_DELAY = 0.5  # seconds before the first retry
MAX_RETRY_DELAY = 30.0  # cap of the exponential backoff (a Retry-After may ask for more)

# The buffered shipper.
DEFAULT_FLUSH_AT = 1000  # wake the worker when this many events wait
DEFAULT_FLUSH_INTERVAL = 0.5  # seconds; ship whatever waits at least this often
DEFAULT_MAX_QUEUE_SIZE = 100_000  # events held in memory before overflow
DEFAULT_MAX_QUEUE_BYTES = 64 * 1024 * 1024  # and their approximate bytes (large metadata)
DEFAULT_DELIVERY_TIMEOUT = 600.0  # seconds a batch is retried before it is given up
DEFAULT_SHUTDOWN_TIMEOUT = 5.0  # seconds close() and the exit hook wait for delivery
DEFAULT_MAX_IN_FLIGHT = 8  # batches sent at once: at 50 ms a round trip, 8 x 1000 events ~ 160k/s
MAX_BATCH_SIZE = 1000  # events per request, the contract's limit
MAX_IN_FLIGHT = 64  # sender threads at most; far beyond what one API key is allowed to send
RECENT_KEYS_REMEMBERED = 100_000  # caller-given idempotency keys checked for duplicates

# Serverless (`flush_after`): seconds kept back from a Lambda invocation's remaining time, so
# the handler still returns (and the platform sends its answer) before the invocation times out.
LAMBDA_TIME_MARGIN = 0.5

# Lists (docs/wire-api.md): `limit` 1 to MAX_PAGE_SIZE (DEFAULT_PAGE_SIZE when not given),
# `offset` 0 to MAX_OFFSET (SQLite's OFFSET is a signed 64-bit integer).
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
MAX_OFFSET = 2**62
