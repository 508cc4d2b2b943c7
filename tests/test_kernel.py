"""The steady kernel client: a missed socket wake-up delays a message by one poll slice, never forever."""

import asyncio
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
