"""A kernel manager for headless notebook runs whose client never sleeps through a message.

nbclient waits for a cell's `execute_reply` with `shell_channel.get_msg(timeout)`, which awaits a
`zmq.asyncio` poll of the socket's edge-triggered file descriptor. In the notebook tests we saw that
wake-up missed (3 times in one afternoon, at 01_data's widget cell, with ipykernel 7.4 and 6.31, then
not again in 20 tries): the kernel had replied (its reply's timestamp is 0.3 s after the request) but
the client slept until the poll's timeout, then found the reply at once (the final `poll(0)`). With
no timeout the run hangs forever; iopub waits (timeout None) would hang the same way, or drop outputs.

`SteadyKernelManager` gives its client shell/iopub/stdin/control channels that poll in slices of
at most `POLL_SLICE_S`, so a missed wake-up costs at most that long. Used by `runner.execute._execute_one`.

Its kernels also talk over Unix sockets (zmq `ipc`) in a fresh folder of their own, not TCP ports:
jupyter_client picks a free port, closes it, and the kernel binds it a moment later, so two grid jobs
starting kernels at once can take each other's ports (CI of 9c72f29: "Address already in use", then
"Kernel didn't respond in 60 seconds"). A path in a private folder cannot be taken. Windows keeps TCP.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from queue import Empty

from jupyter_client import AsyncKernelManager
from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.channels import AsyncZMQSocketChannel
from traitlets import DottedObjectName, Type, default

POLL_SLICE_S = 0.5  # seconds: the longest a missed wake-up can delay a message


class SteadyChannel(AsyncZMQSocketChannel):
    """`get_msg` that re-checks the socket at least every POLL_SLICE_S (same contract: Empty on timeout)."""

    async def get_msg(self, timeout: float | None = None) -> dict:
        assert self.socket is not None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = POLL_SLICE_S if deadline is None else min(POLL_SLICE_S, max(0.0, deadline - time.monotonic()))
            if await self.socket.poll(int(step * 1000)):
                return await self._recv()
            if deadline is not None and time.monotonic() >= deadline:
                raise Empty


class SteadyKernelClient(AsyncKernelClient):
    shell_channel_class = Type(SteadyChannel)
    iopub_channel_class = Type(SteadyChannel)
    stdin_channel_class = Type(SteadyChannel)
    control_channel_class = Type(SteadyChannel)


class SteadyKernelManager(AsyncKernelManager):
    client_class = DottedObjectName("sim2real_kit._kernel.SteadyKernelClient")
    client_factory = Type(SteadyKernelClient, klass="jupyter_client.asynchronous.AsyncKernelClient")

    @default("transport")
    def _transport_default(self) -> str:
        return "ipc" if os.name == "posix" else "tcp"

    @default("ip")
    def _ip_default(self) -> str:
        """ipc: the sockets are <folder>/k-1 ... k-5 in a folder made for this kernel (short paths:
        a Unix socket path has ~100 bytes)."""
        if self.transport == "ipc":  # the folder is made when the kernel starts (a client alone makes none)
            return os.path.join(tempfile.gettempdir(), f"s2r-kernel-{uuid.uuid4().hex[:12]}", "k")
        return super()._ip_default()

    async def _async_pre_start_kernel(self, **kw):
        if self.transport == "ipc":
            os.makedirs(os.path.dirname(self.ip), mode=0o700, exist_ok=True)
        try:
            return await super()._async_pre_start_kernel(**kw)
        except BaseException:  # e.g. NoSuchKernel: no kernel, no cleanup call later
            await self._async_cleanup_resources()
            raise

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        folder = os.path.dirname(self.ip)
        if not restart and self.transport == "ipc" and os.path.basename(folder).startswith("s2r-kernel-"):
            shutil.rmtree(folder, ignore_errors=True)  # a restarted kernel binds the same paths again

    cleanup_resources = _async_cleanup_resources  # AsyncKernelManager binds the base function directly
