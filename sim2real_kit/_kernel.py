"""A kernel manager for headless notebook runs whose client never sleeps through a message.

nbclient waits for a cell's `execute_reply` with `shell_channel.get_msg(timeout)`, which awaits a
`zmq.asyncio` poll of the socket's edge-triggered file descriptor. In the notebook tests we saw that
wake-up missed (3 times in one afternoon, at 01_data's widget cell, with ipykernel 7.4 and 6.31, then
not again in 20 tries): the kernel had replied (its reply's timestamp is 0.3 s after the request) but
the client slept until the poll's timeout, then found the reply at once (the final `poll(0)`). With
no timeout the run hangs forever; iopub waits (timeout None) would hang the same way, or drop outputs.

`SteadyKernelManager` gives its client shell/iopub/stdin/control channels that poll in slices of
at most `POLL_SLICE_S`, so a missed wake-up costs at most that long. Used by `runner.execute._execute_one`.
"""

from __future__ import annotations

import time
from queue import Empty

from jupyter_client import AsyncKernelManager
from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.channels import AsyncZMQSocketChannel
from traitlets import DottedObjectName, Type

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
