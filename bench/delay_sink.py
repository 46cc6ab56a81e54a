#!/usr/bin/python3
"""An SMTP sink whose reply to the end of DATA takes a set delay, for bench/run.sh.

    bench/delay_sink.py PORT DELAY_MS [STATS_FILE]

Accepts and discards every message, like Postfix's smtp-sink, but answers the final "." only
after DELAY_MS milliseconds, as a relay that fsyncs its queue, scans content or sits across a
network does (smtp-sink's -w delays the DATA command, not the end of the data, and only in whole
seconds). Other commands are answered at once. Every connection is served concurrently, so the
delay is per transaction, never a queue. Writes "messages N max_open M" to STATS_FILE on SIGTERM
(M: the most transactions between MAIL FROM and the final reply at once). Plain asyncio with no
SMTP library: at 0 ms use smtp-sink instead, which is faster than any Python.
"""

import asyncio
import signal
import sys

port = int(sys.argv[1])
delay = int(sys.argv[2]) / 1000.0
stats_file = sys.argv[3] if len(sys.argv) > 3 else None
messages = 0
open_now = 0
max_open = 0


async def session(reader, writer):
    global messages, open_now, max_open
    in_transaction = False
    writer.write(b"220 delay-sink ESMTP\r\n")
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                writer.write(b"250-delay-sink\r\n250-8BITMIME\r\n250 SIZE 104857600\r\n")
            elif verb == b"MAIL":
                if not in_transaction:
                    in_transaction = True
                    open_now += 1
                    max_open = max(max_open, open_now)
                writer.write(b"250 2.1.0 Ok\r\n")
            elif verb == b"RCPT":
                writer.write(b"250 2.1.5 Ok\r\n")
            elif verb == b"DATA":
                writer.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                await writer.drain()
                # The whole body in one read up to the terminating dot line: line by line,
                # Python itself became the bottleneck once several daemons sent at once.
                try:
                    await reader.readuntil(b"\r\n.\r\n")
                except asyncio.IncompleteReadError:
                    break
                if delay > 0:
                    await asyncio.sleep(delay)
                messages += 1
                if in_transaction:
                    in_transaction = False
                    open_now -= 1
                writer.write(b"250 2.0.0 Ok: queued\r\n")
            elif verb == b"RSET":
                if in_transaction:
                    in_transaction = False
                    open_now -= 1
                writer.write(b"250 2.0.0 Ok\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 2.0.0 Bye\r\n")
                await writer.drain()
                break
            else:
                writer.write(b"250 2.0.0 Ok\r\n")
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        if in_transaction:
            open_now -= 1
        writer.close()


async def main():
    server = await asyncio.start_server(session, "127.0.0.1", port, backlog=1000,
                                        limit=64 * 1024 * 1024)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("listening on %d, end-of-DATA delay %d ms" % (port, delay * 1000), flush=True)
    await stop.wait()
    server.close()
    if stats_file:
        with open(stats_file, "w") as f:
            f.write("messages %d max_open %d\n" % (messages, max_open))


asyncio.run(main())
