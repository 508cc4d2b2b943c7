"""The steady kernel client: a missed socket wake-up delays a message by one poll slice, never forever."""

import asyncio
import os
import time
from queue import Empty

import pytest
import zmq
import zmq.asyncio
from jupyter_client.session import Session

from sim2real_kit import _kernel
from sim2real_kit._kernel import SteadyChannel, SteadyKernelManager


class _MissedWakeup:
    """Wraps an async socket: the first poll with a timeout sleeps it out and reports nothing even
    though a message is waiting (what a lost edge-triggered wake-up looks like); later polls are honest."""

    def __init__(self, socket):
        self.socket, self.polls = socket, []

    async def poll(self, timeout=None):
        self.polls.append(timeout)
        if len(self.polls) == 1:
            await asyncio.sleep((timeout or 0) / 1000)
            return 0
        return await self.socket.poll(timeout)

    def __getattr__(self, name):
        return getattr(self.socket, name)


@pytest.fixture
def pair():
    ctx = zmq.asyncio.Context()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    port = a.bind_to_random_port("tcp://127.0.0.1")
    b.connect(f"tcp://127.0.0.1:{port}")
    yield a, b
    a.close(0)
    b.close(0)
    ctx.term()


def test_message_waiting_behind_a_missed_wakeup_arrives_within_a_slice(pair, monkeypatch):
    monkeypatch.setattr(_kernel, "POLL_SLICE_S", 0.1)
    a, b = pair
    session = Session(key=b"k")

    async def go():
        await b.send_multipart(session.serialize(session.msg("execute_reply", {"status": "ok"})))
        await asyncio.sleep(0.05)  # the message sits in the receiving socket
        chan = SteadyChannel(a, session)
        chan.socket = _MissedWakeup(a)
        t0 = time.monotonic()
        msg = await chan.get_msg(timeout=None)  # the stock channel would wait forever here
        return msg, time.monotonic() - t0, chan.socket.polls

    msg, waited, polls = asyncio.run(go())
    assert msg["msg_type"] == "execute_reply" and msg["content"] == {"status": "ok"}
    assert polls[0] == 100 and len(polls) == 2  # one lost slice of 100 ms, then found
    assert 0.09 < waited < 2.0


def test_timeout_still_raises_empty_on_time(pair, monkeypatch):
    monkeypatch.setattr(_kernel, "POLL_SLICE_S", 0.1)
    a, _ = pair

    async def go():
        chan = SteadyChannel(a, Session(key=b"k"))
        t0 = time.monotonic()
        with pytest.raises(Empty):
            await chan.get_msg(timeout=0.35)
        return time.monotonic() - t0

    assert 0.3 < asyncio.run(go()) < 1.5


def test_manager_hands_out_steady_channels():
    km = SteadyKernelManager(kernel_name="python3")
    kc = km.client()
    assert isinstance(kc, _kernel.SteadyKernelClient)
    assert kc.shell_channel_class is SteadyChannel and kc.iopub_channel_class is SteadyChannel


class _PortThief:
    """Stands in for a second grid job: every TCP port the port cache hands this process's kernel
    manager is bound by someone else before the kernel binds it (jupyter_client picks a free port,
    closes it, and the kernel binds it later; a parallel job can take it in between)."""

    def __init__(self, real):
        self.real, self.held = real, []

    def __call__(self, cache, ip):
        import socket

        port = self.real(cache, ip)
        s = socket.socket()
        s.bind((ip, port))
        s.listen()
        self.held.append(s)
        return port


def test_kernel_starts_when_another_job_takes_the_ports_it_was_handed(monkeypatch):
    """CI of 9c72f29 failed on this race (test_grid_parallel_jobs_from_base_run: "Address already in
    use", then "Kernel didn't respond in 60 seconds"): headless kernels talk over Unix sockets in a
    fresh folder of their own, so no other process can take their addresses."""
    from jupyter_client.provisioning.local_provisioner import LocalPortCache

    thief = _PortThief(LocalPortCache.find_available_port)
    monkeypatch.setattr(LocalPortCache, "find_available_port", lambda cache, ip: thief(cache, ip))

    async def go():
        km = SteadyKernelManager(kernel_name="python3")
        await km.start_kernel()
        kc = km.client()
        kc.start_channels()
        try:
            await kc.wait_for_ready(timeout=30)
            reply = await kc.execute_interactive("x = 6 * 7", timeout=30)
            return km.transport, reply["content"]["status"], os.path.dirname(km.ip)
        finally:
            kc.stop_channels()
            await km.shutdown_kernel(now=True)

    try:
        transport, status, folder = asyncio.run(go())
    finally:
        for s in thief.held:
            s.close()
    assert (transport, status) == ("ipc", "ok")
    assert not os.path.exists(folder)  # the socket folder goes with the kernel


def test_restarted_kernel_keeps_its_socket_folder():
    async def go():
        km = SteadyKernelManager(kernel_name="python3")
        await km.start_kernel()
        folder = os.path.dirname(km.ip)
        await km.restart_kernel(now=True)
        kc = km.client()
        kc.start_channels()
        try:
            await kc.wait_for_ready(timeout=30)
            reply = await kc.execute_interactive("1 + 1", timeout=30)
            alive = os.path.isdir(folder)
        finally:
            kc.stop_channels()
            await km.shutdown_kernel(now=True)
        return reply["content"]["status"], alive, os.path.exists(folder)

    assert asyncio.run(go()) == ("ok", True, False)
