"""Run a function in a forked child and get its result back: the pattern behind every demo, test and
helper that must change per-process kernel state (unshare a mount namespace, mount, chroot) without
touching the caller — a Jupyter kernel, a test runner, the daemon.

What this teaches
-----------------
fork(2) copies the process; the child does the work and writes its result (or its exception) into
a pipe(2) as a pickle, then ends with ``os._exit`` — it must never return into the caller's code
(which would go on running twice). The parent reads the pipe with a deadline (select(2)): a child
that hangs is SIGKILLed and the caller gets a TimeoutError instead of waiting forever; a child that
dies without writing (killed, crashed) is a :class:`ChildError` too. Namespaces are per thread, so
namespace work always happens in such a child.

The one copy of this helper (rootfs and unionfs use it; ``rootfs._fork_call`` is the old name).
"""
from __future__ import annotations

import os
import select
import signal
import sys
import time
from collections.abc import Callable

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~8 ms on every start)
if TYPE_CHECKING:
    from typing import Any

from . import kernel as K
from .kernel import Linux

__all__ = ["ChildError", "call_in_child", "format_exc"]


def format_exc() -> str:
    """The exception being handled, as Python prints it (chained causes too), without source lines.

    Why not ``traceback.format_exc``: a forked container init must import, before pivot_root,
    everything it may need after it (an ``import`` there would read the container's files — code
    the image controls), and ``traceback`` brings ``linecache``, ``tokenize`` and ``textwrap``:
    ~3 ms of every runtime start, to print source lines that after pivot_root it cannot read."""
    e = sys.exc_info()[1]
    return _format_exception(e, set()) if e is not None else "NoneType: None\n"


def _format_exception(e: BaseException, seen: set) -> str:
    seen.add(id(e))
    head = ""
    cause = e.__cause__ if e.__cause__ is not None else (None if e.__suppress_context__ else e.__context__)
    if cause is not None and id(cause) not in seen:
        head = _format_exception(cause, seen) + (
            "\nThe above exception was the direct cause of the following exception:\n\n" if e.__cause__ is not None
            else "\nDuring handling of the above exception, another exception occurred:\n\n")
    lines = ["Traceback (most recent call last):\n"] if e.__traceback__ is not None else []
    tb = e.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        lines.append(f'  File "{code.co_filename}", line {tb.tb_lineno}, in {code.co_name}\n')
        tb = tb.tb_next
    kind = type(e)
    name = kind.__qualname__ if kind.__module__ in ("builtins", "__main__") else f"{kind.__module__}.{kind.__qualname__}"
    text = str(e)
    lines.append(f"{name}: {text}\n" if text else f"{name}\n")
    return head + "".join(lines)


class ChildError(RuntimeError):
    """An exception raised in a forked child, carried back to the parent as text."""

    def __init__(self, type_name: str, message: str, errno_: int | None, notes: list[str], tb: str):
        self.type_name, self.message, self.errno, self.notes, self.remote_traceback = (
            type_name, message, errno_, notes, tb)
        text = f"in child: {type_name}: {message}"
        if notes:
            text += " (" + "; ".join(notes) + ")"
        super().__init__(text)


def call_in_child(fn: Callable[[], Any], timeout: float = 60.0, pdeathsig: bool = False,
                  in_parent: Callable[[int], None] | None = None) -> Any:
    """Run ``fn()`` in a forked child and return its (pickled) result; raise :class:`ChildError` if it
    raised. The child never returns into the caller's code: it always ends with os._exit. It must not
    print either (in a Jupyter kernel stdout belongs to a thread that does not exist in the child).
    ``pdeathsig``: the child is SIGKILLed if its parent dies (used for pid 1 of a namespace, whose
    death kills the whole namespace). ``in_parent(pid)`` runs in the parent right after the fork."""
    # Imported here, before the fork, so the child has it whatever it does (a child that pivots
    # its root could not import it any more); not at the top: the runtime CLI never calls this,
    # and pickle cost each of its starts ~1-2 ms.
    import pickle
    r, w = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            os.close(r)
            if pdeathsig:
                Linux().prctl(K.PR_SET_PDEATHSIG, signal.SIGKILL)
                # (the parent may have died before prctl; pid 1 of a new pid namespace sees ppid 0)
                if os.getppid() not in (parent, 0):
                    os._exit(1)
            try:
                payload = pickle.dumps(("ok", fn()))
            except ChildError as e:  # from a grandchild: pass it on unchanged
                code = 1
                payload = pickle.dumps(("error", (e.type_name, e.message, e.errno, e.notes,
                                                  e.remote_traceback)))
            except BaseException as e:  # noqa: BLE001 - everything goes back to the parent
                code = 1
                payload = pickle.dumps(("error", (type(e).__name__, str(e), getattr(e, "errno", None),
                                                  list(getattr(e, "__notes__", [])), format_exc())))
            view = memoryview(payload)
            while view:
                view = view[os.write(w, view):]
        finally:
            os._exit(code)
    os.close(w)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        if in_parent is not None:
            in_parent(pid)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                raise TimeoutError(f"child {pid} did not finish within {timeout} s (killed)")
            chunk = os.read(r, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    except BaseException:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        raise
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    if not chunks:
        raise ChildError("exit", f"child exited without a result (wait status {status})", None, [], "")
    kind, value = pickle.loads(b"".join(chunks))
    if kind == "error":
        raise ChildError(*value)
    return value
