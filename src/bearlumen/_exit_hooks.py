"""Every way a process ends, and the flush that runs on each way out.

* Normal exit, or an uncaught exception: an `atexit` hook closes each client, waiting at most
  `shutdown_timeout`, then giving up what is left (counted failed, handed to on_error). Idle
  clients are closed too: an event recorded later (an app's atexit hook registered before the
  client, a finalizer during interpreter shutdown) is dropped and counted, and no thread is
  started then (one started during interpreter shutdown never runs, and `Thread.start()` would
  wait for it for ever).
* A `multiprocessing` child (Pool, ProcessPoolExecutor; fork, forkserver or spawn) ends with
  `os._exit` once its work is done, so atexit never runs there; multiprocessing runs its own
  finalizers first. Each shipper registers one (`multiprocessing.util.Finalize`), and again in
  every new child through `register_after_fork`, because a new child clears the registry.
* SIGTERM (`docker stop`, Kubernetes, `Pool.terminate()`, gunicorn's and uvicorn's shutdown): by
  default it kills the process before atexit. A client created in the main thread installs one
  handler per process. It flushes every client (bounded by the largest `shutdown_timeout`),
  switches them to shipping each event at once (an app still finishing requests records more),
  and does what the handler it found would have done: call it (uvicorn's, gunicorn's, the app's
  own), ignore the signal, or die by SIGTERM as the default does (status 143 / -15). uvicorn
  saves the handler it finds at startup and re-raises SIGTERM through it after its graceful
  shutdown, which lands here again with whatever was recorded meanwhile.

  A signal handler runs on the main thread wherever the signal interrupted it, possibly inside
  one of the shipper's locks or an Event's: if it waited for the worker there, it could wait on
  itself. So it waits for nothing and takes no lock: a helper thread records the LLM calls
  still queued for client.llm's capture thread, queues a flush marker, wakes the worker,
  waits, and then, if the default was to die, sends SIGTERM again with the default restored.
  Meanwhile the main thread goes on; if it reaches the exit hooks first, they wait for the
  helper, so the exit status is still death by SIGTERM.
* A forked server worker (gunicorn's UvicornWorker) resets SIGTERM to the default after the
  fork and then installs uvicorn's: the first event recorded on the main thread of such a child
  installs the handler again, chained to the one it finds. uvicorn saved the default there, so
  after its graceful shutdown it restores the default and raises SIGTERM again, which would kill
  the process at once, mid-flush. So when our handler chains to another, it blocks SIGTERM on
  the main thread: such a re-raise waits, pending, until the last exit hook has flushed every
  client, and then unblocks it, so the process still dies by SIGTERM as it would have.
* The exit hooks themselves: uvicorn's exit restores the default SIGTERM there even when no
  signal came (a worker recycled by gunicorn's --max-requests), and gunicorn's master, stopped
  during that worker's flush, SIGTERMs it. So the first exit hook puts our handler back over a
  default: such a SIGTERM still ends the process, but after the flush.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
import time
import weakref
from multiprocessing import util as multiprocessing_util
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from ._shipper import Shipper

logger = logging.getLogger("bearlumen")

# Run before multiprocessing's own finalizers of lower priority (its queues and managers).
FINALIZER_PRIORITY = 50

# The shippers that flush on SIGTERM (their clients did not pass handle_sigterm=False).
_sigterm_shippers: weakref.WeakSet[Shipper] = weakref.WeakSet()
_previous_handler: Any = None  # what SIGTERM did before our handler: called, ignored or default
_dying: threading.Thread | None = None  # the helper that ends the process by SIGTERM
_holding_sigterm = False  # SIGTERM is blocked on the main thread until the exit hooks are done
_guarding_exit = False  # the exit hooks put our handler back over the default (see below)


def watch(shipper: Shipper, *, handle_sigterm: bool) -> None:
    """Close `shipper` on every way out of this process (see the module docstring)."""
    shipper_ref = weakref.ref(shipper)
    atexit.register(_close_at_exit, shipper_ref)
    _register_finalizer(shipper)
    multiprocessing_util.register_after_fork(shipper, _register_finalizer)
    if handle_sigterm:
        _sigterm_shippers.add(shipper)
        install_sigterm_handler()


def install_sigterm_handler() -> None:
    """Install the SIGTERM handler, once per process; only the main thread can."""
    global _previous_handler
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        current = signal.getsignal(signal.SIGTERM)
        if current is _on_sigterm:
            return
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # not the main interpreter, or no signals here
        return
    _previous_handler = current


# Signals a process is sent (as opposed to faults a thread causes). Python runs their handlers
# on the main thread only; one delivered to another thread waits until the main thread next
# runs Python, which never comes while it blocks in a read (`sys.stdin.read()`, a socket).
_SENT_SIGNALS = {
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM")
    if hasattr(signal, name)
}


def leave_signals_to_the_main_thread() -> None:
    """First thing on each of our background threads: the signals a process is sent are
    blocked here, so the kernel hands them to a thread that runs their handlers at once.

    Without it a SIGTERM could land on one of the shipper's idle threads, and the app's handler
    (or ours) would not run until the main thread woke for some other reason.
    """
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, _SENT_SIGNALS)


def _on_sigterm(signum: int, frame: Any) -> None:
    global _dying, _holding_sigterm
    previous = _previous_handler
    die = not callable(previous) and previous != signal.SIG_IGN
    if die:
        # The default (or a handler installed from C, which Python cannot call): the helper
        # ends the process by SIGTERM once the flush is done, so the parent sees the same exit
        # status as without us; a second SIGTERM meanwhile ends it at once.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    elif callable(previous) and hasattr(signal, "pthread_sigmask"):
        # The handler we chain to may restore the default and raise SIGTERM again when it is
        # done (uvicorn does): hold that on this thread until the exit hooks have flushed.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        _holding_sigterm = True
    shippers = list(_sigterm_shippers)
    for shipper in shippers:
        shipper.ship_each_event_at_once()
    helper = threading.Thread(
        target=_finish_exit_flush, args=(shippers, die), name="bearlumen-sigterm", daemon=True
    )
    helper.start()
    if die:
        _dying = helper
    elif callable(previous):
        previous(signum, frame)


def _finish_exit_flush(shippers: list[Shipper], die: bool) -> None:
    """On the helper thread: record what waits elsewhere (client.llm's queued captures: it takes
    locks, which the handler must not), queue the flush markers, wake the workers, wait
    (bounded), then die if that was the plan."""
    flushes = []
    for shipper in shippers:
        shipper.record_pending_before_exit(final=False)
        flushes.append((shipper, shipper.start_exit_flush()))
    waits = [(shipper, done) for shipper, done in flushes if done is not None]
    for shipper, _ in waits:
        shipper.wake()
    if waits:
        deadline = time.monotonic() + max(shipper.shutdown_timeout for shipper, _ in waits)
        for shipper, done in waits:
            if not done.wait(max(0.0, deadline - time.monotonic())):
                # Ending now (die): what is undelivered is counted failed and goes to on_error
                # before the process ends; otherwise the exit hooks' close() does that.
                undelivered = shipper.give_up() if die else shipper.undelivered_estimate()
                if not undelivered:
                    continue  # given up meanwhile by an exit hook's close(), which said so
                logger.error(
                    "bearlumen: SIGTERM: %d usage event(s) undelivered after"
                    " shutdown_timeout=%ss%s",
                    undelivered,
                    shipper.shutdown_timeout,
                    ": counted failed and handed to on_error" if die else "",
                )
    if die:
        os.kill(os.getpid(), signal.SIGTERM)


def _close_at_exit(shipper_ref: weakref.ref[Shipper]) -> None:
    shipper = shipper_ref()
    if shipper is not None and shipper in _sigterm_shippers:
        _guard_exit_flush()
    if shipper is not None:
        shipper.close_at_exit()
    dying = _dying
    if dying is not None and dying is not threading.current_thread():
        dying.join()  # bounded by shutdown_timeout; it ends the process by SIGTERM


def _guard_exit_flush() -> None:
    """The process is ending and about to flush: a SIGTERM by default would kill it mid-flush.

    A server worker recycled by gunicorn's --max-requests ends without any signal, but uvicorn
    restored the default SIGTERM on its way out (replacing ours): if gunicorn's master, stopped
    meanwhile, sends it SIGTERM during the flush, it dies with its events. So the exit hooks
    install our handler again over the default: the SIGTERM ends the process, as the default
    would, but once the flush is done (bounded by shutdown_timeout).
    """
    global _previous_handler, _guarding_exit
    if _guarding_exit or threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
            return  # ours, ignored, or a handler that does not kill at once
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # not the main interpreter, or no signals here
        return
    _previous_handler = signal.SIG_DFL
    _guarding_exit = True


def _release_held_sigterm() -> None:
    """The last exit hook (registered first): a SIGTERM held meanwhile now ends the process."""
    if threading.current_thread() is not threading.main_thread():
        return
    dying = _dying
    if dying is not None:
        dying.join()  # a SIGTERM after the last client's hook: it ends the process
    if _guarding_exit and signal.getsignal(signal.SIGTERM) is _on_sigterm:
        # Every client is flushed: the default again, so a held SIGTERM ends the process now
        # rather than in a helper thread that interpreter shutdown might outrun.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if _holding_sigterm:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


# atexit runs hooks in reverse order of registration: this one, registered on import, before
# any client's, runs after all of them.
atexit.register(_release_held_sigterm)


def _register_finalizer(shipper: Shipper) -> None:
    # Finalize holds the shipper weakly; the callback gets only a weak reference, so the
    # shipper can still be collected.
    close: Callable[[weakref.ref[Shipper]], None] = _close_at_exit
    multiprocessing_util.Finalize(
        shipper, close, args=(weakref.ref(shipper),), exitpriority=FINALIZER_PRIORITY
    )
