#!/usr/bin/python3
"""A real SMTP server for channeld's integration tests, on 127.0.0.1.

Run with the system interpreter (/usr/bin/python3, which has aiosmtpd 1.4 from Debian's
python3-aiosmtpd); tests/support/smtp_server.cpp spawns it. Once listening it prints
"PORT <n>" on stdout, and it exits when its stdin reaches end of file, so a test process that
dies never leaves a server behind.

Behaviour switches, all optional:
  --port N                listen on N (default 0: an ephemeral port)
  --maildir DIR           write each accepted message to DIR/<seq>.eml (seq zero-padded, so the
                          names sort in arrival order) before answering 250: a client that was
                          told "sent" always finds the file
  --tempfail-first N      answer 451 to the first N messages (after their data), then accept
  --tempfail-file PATH    answer 451 to every message while PATH exists, so a test switches
                          failures on and off without timing
  --reject-rcpt TEXT      550 at RCPT TO for addresses containing TEXT
  --reject-sender TEXT    550 at MAIL FROM for senders containing TEXT
  --reject-data TEXT      554 after DATA for messages containing TEXT
  --data-delay SECONDS    wait this long before answering the end of DATA (a relay that fsyncs
                          its queue or scans content, or one across a network)
  --drop-after N          close each connection, without a reply, when its client starts the
                          message after its N-th accepted one (a relay that dropped an idle
                          connection the client still counts as open)
  --reply-421-first N     answer the first N MAIL FROM commands with 421 and close the
                          connection (a relay shutting down)
  --stats PATH            keep a JSON summary at PATH (connections opened, the most open at
                          once, transactions open at once, messages accepted and refused),
                          rewritten before every reply that changes it

For speed tests the bench uses Postfix's smtp-sink instead, which accepts and discards mail
without Python in the loop (as root, -u drops privileges):
  /usr/sbin/smtp-sink -u postfix -c 127.0.0.1:2525 1000 &
-c counts sessions and messages on its terminal; 1000 is the listen backlog.
"""

import argparse
import asyncio
import json
import os
import signal
import sys

try:
    from aiosmtpd.smtp import SMTP
except ImportError:
    print("smtp_server.py: aiosmtpd is not installed for " + sys.executable, file=sys.stderr)
    sys.exit(3)


class Recorder:
    """The aiosmtpd handler: decides each reply and records accepted messages."""

    def __init__(self, args):
        self.args = args
        self.messages_seen = 0
        self.accepted = 0
        self.refused = 0
        self.connections = 0
        self.open_connections = 0
        self.max_open_connections = 0
        self.open_transactions = 0
        self.max_open_transactions = 0
        self.mail_commands = 0

    # A transaction is open from an accepted MAIL FROM to the reply to its end of DATA (or to
    # RSET, or to the connection closing): what the server sees as messages in progress at once.
    def transaction_opened(self, session):
        if not getattr(session, "in_transaction", False):
            session.in_transaction = True
            self.open_transactions += 1
            self.max_open_transactions = max(self.max_open_transactions, self.open_transactions)

    def transaction_closed(self, session):
        if getattr(session, "in_transaction", False):
            session.in_transaction = False
            self.open_transactions -= 1

    async def handle_RSET(self, server, session, envelope):
        self.transaction_closed(session)
        return "250 OK"

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.mail_commands += 1
        if self.mail_commands <= self.args.reply_421_first:
            asyncio.get_running_loop().call_soon(server.transport.close)
            return "421 4.3.2 service shutting down"
        accepted_here = getattr(session, "accepted_here", 0)
        if self.args.drop_after and accepted_here >= self.args.drop_after:
            server.transport.abort()
            return "421 4.4.2 dropped"  # never reaches the client
        if self.args.reject_sender and self.args.reject_sender in address:
            self.refused += 1
            self.write_stats()
            return "550 5.7.1 <%s>: sender rejected" % address
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        self.transaction_opened(session)
        self.write_stats()
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.args.reject_rcpt and self.args.reject_rcpt in address:
            self.refused += 1
            self.write_stats()
            return "550 5.1.1 <%s>: recipient address rejected" % address
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.args.data_delay > 0:
            await asyncio.sleep(self.args.data_delay)
        self.transaction_closed(session)
        self.messages_seen += 1
        content = envelope.original_content
        if self.messages_seen <= self.args.tempfail_first or (
            self.args.tempfail_file and os.path.exists(self.args.tempfail_file)
        ):
            self.refused += 1
            self.write_stats()
            return "451 4.3.0 try again later"
        if self.args.reject_data and self.args.reject_data.encode() in content:
            self.refused += 1
            self.write_stats()
            return "554 5.6.0 message content rejected"
        self.accepted += 1
        session.accepted_here = getattr(session, "accepted_here", 0) + 1
        if self.args.maildir:
            # Written aside and renamed, as maildir delivery does: a test polling the directory
            # must never read a message the server is still writing (it would lack headers).
            name = os.path.join(self.args.maildir, "%08d.eml" % self.accepted)
            with open(name + ".tmp", "wb") as f:
                f.write(content)
            os.replace(name + ".tmp", name)
        self.write_stats()
        return "250 2.0.0 OK queued as %d" % self.accepted

    def connection_opened(self):
        self.connections += 1
        self.open_connections += 1
        self.max_open_connections = max(self.max_open_connections, self.open_connections)
        self.write_stats()

    def connection_closed(self):
        self.open_connections -= 1
        self.write_stats()

    def write_stats(self):
        if not self.args.stats:
            return
        stats = {
            "connections": self.connections,
            "max_open_connections": self.max_open_connections,
            "max_open_transactions": self.max_open_transactions,
            "accepted": self.accepted,
            "refused": self.refused,
        }
        temp = self.args.stats + ".tmp"
        with open(temp, "w") as f:
            json.dump(stats, f)
        os.replace(temp, self.args.stats)


def make_protocol(recorder, loop):
    class CountingSMTP(SMTP):
        # aiosmtpd calls connection_made again after STARTTLS on the same connection; only the
        # first call is a new connection.
        def connection_made(self, transport):
            new = getattr(self, "_original_transport", None) is None and self.transport is None
            super().connection_made(transport)
            if new:
                recorder.connection_opened()

        def connection_lost(self, error):
            if self.session is not None:
                recorder.transaction_closed(self.session)
            super().connection_lost(error)
            recorder.connection_closed()

    # hostname is fixed so start-up never waits on a reverse DNS lookup.
    return lambda: CountingSMTP(recorder, hostname="localhost", ident="channeld-test", loop=loop)


async def serve(args):
    loop = asyncio.get_running_loop()
    recorder = Recorder(args)
    recorder.write_stats()
    server = await loop.create_server(make_protocol(recorder, loop), "127.0.0.1", args.port)
    print("PORT %d" % server.sockets[0].getsockname()[1], flush=True)

    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not os.read(0, 4096) else None)
    await stop.wait()
    server.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--maildir")
    parser.add_argument("--tempfail-first", type=int, default=0)
    parser.add_argument("--tempfail-file")
    parser.add_argument("--reject-rcpt")
    parser.add_argument("--reject-sender")
    parser.add_argument("--reject-data")
    parser.add_argument("--data-delay", type=float, default=0.0)
    parser.add_argument("--drop-after", type=int, default=0)
    parser.add_argument("--reply-421-first", type=int, default=0)
    parser.add_argument("--stats")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
