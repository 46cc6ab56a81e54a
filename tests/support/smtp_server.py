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
  --pipelining            advertise PIPELINING (RFC 2920) after EHLO. aiosmtpd reads commands
                          from a buffered stream and answers them one by one in order, so a
                          client's pipelined MAIL+RCPT+DATA in one write works without it too;
                          the flag only changes what the server offers
  --ehlo-size N           advertise SIZE N (instead of aiosmtpd's default 33554432) and refuse
                          with "552 5.3.4 message too big" a MAIL FROM whose SIZE= is above N,
                          and a message longer than N after DATA
  --tls-cert PATH, --tls-key PATH
                          offer STARTTLS with this certificate (PEM files)
  --implicit-tls          with --tls-cert/--tls-key: TLS from the first byte instead of STARTTLS
                          (SMTPS, port-465 style, what smtps:// URLs use); no STARTTLS offered
  --auth USER:PASSWORD    require AUTH (PLAIN or LOGIN) with this one credential before MAIL
                          FROM (530 otherwise); a wrong credential gets 535. AUTH is offered and
                          accepted only over TLS (STARTTLS or --implicit-tls): on a plain
                          connection it is not advertised and answers 538, so with --auth but
                          no TLS no client can send mail
  --auth-over-plain       with --auth: offer and accept AUTH on plain connections too
  --stats PATH            keep a JSON summary at PATH, rewritten before every reply that
                          changes it:
                            connections             connections opened (after the TLS handshake
                                                    with --implicit-tls: a failed one is not
                                                    counted)
                            max_open_connections    the most open at once
                            max_open_transactions   the most messages at once between an
                                                    accepted MAIL FROM and the reply to DATA
                            accepted, refused       messages accepted; commands refused (MAIL,
                                                    RCPT or the end of DATA)
                            pipelined_transactions  MAIL FROM commands after which an RCPT TO and
                                                    a DATA had already arrived when the server
                                                    started on the MAIL FROM, before it replied:
                                                    the client pipelined them (RFC 2920) rather
                                                    than waiting for each reply. Counts every MAIL
                                                    FROM, answered 250 or not
                            authenticated           successful AUTH commands
                            tls_sessions            connections that completed STARTTLS or the
                                                    implicit TLS handshake
                            last_mail_size          the value of SIZE= on the last MAIL FROM, or
                                                    -1 if it had none (or not a number)

For speed tests the bench uses Postfix's smtp-sink instead, which accepts and discards mail
without Python in the loop (as root, -u drops privileges):
  /usr/sbin/smtp-sink -u postfix -c 127.0.0.1:2525 1000 &
-c counts sessions and messages on its terminal; 1000 is the listen backlog.
"""

import argparse
import asyncio
import json
import logging
import os
import re
import signal
import ssl
import sys
import warnings

try:
    from aiosmtpd.smtp import SMTP, AuthResult
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
        self.pipelined_transactions = 0
        self.authenticated = 0
        self.tls_sessions = 0
        self.last_mail_size = -1
        # Only the argument: aiosmtpd takes every handler attribute named auth_* for an AUTH
        # mechanism, so none of this class's may be.
        self.credential = None
        if args.auth:
            user, _, password = args.auth.partition(":")
            self.credential = (user.encode(), password.encode())

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

    # aiosmtpd 1.4 hands this hook the reply lines it built (the last one "250 HELP") and sends
    # what it returns. With the hook, setting session.host_name is the hook's job: without it
    # every MAIL FROM would get "503 send HELO first".
    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        # aiosmtpd advertises AUTH (always failing) after STARTTLS even with no credential set up:
        # a client that has one would try it, where a real relay without AUTH says nothing.
        lines = [r for r in responses[:-1] if self.credential or not r.startswith("250-AUTH")]
        if self.args.ehlo_size:
            lines.append("250-SIZE %d" % self.args.ehlo_size)
        if self.args.pipelining:
            lines.append("250-PIPELINING")
        return lines + ["250 HELP"]

    # aiosmtpd's `authenticator`: PLAIN and LOGIN both end here with the decoded credential.
    def check_credential(self, server, session, envelope, mechanism, auth_data):
        if self.credential and (auth_data.login, auth_data.password) == self.credential:
            self.authenticated += 1
            self.write_stats()
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)  # aiosmtpd answers 535 5.7.8

    # Before aiosmtpd's own checks, so every MAIL FROM counts, whatever its reply.
    def mail_command(self, server, arg):
        size = re.search(r"(?:^|\s)SIZE=(\S*)", arg or "", re.IGNORECASE)
        self.last_mail_size = int(size.group(1)) if size and size.group(1).isdigit() else -1
        # What the client sent after MAIL FROM and the server has not read yet. Nothing yields
        # to the event loop between here and the reply to MAIL (the handler awaits nothing on
        # the way), so this is everything that arrived before the reply went out.
        waiting = bytes(server._reader._buffer).upper().split(b"\r\n")
        if any(line.startswith(b"RCPT ") for line in waiting) and b"DATA" in waiting:
            self.pipelined_transactions += 1
        self.write_stats()

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
        if self.args.ehlo_size and self.last_mail_size > self.args.ehlo_size:
            self.refused += 1
            self.write_stats()
            return "552 5.3.4 message too big"
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
        if self.args.ehlo_size and len(content) > self.args.ehlo_size:
            self.refused += 1
            self.write_stats()
            return "552 5.3.4 message too big"
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
            "pipelined_transactions": self.pipelined_transactions,
            "authenticated": self.authenticated,
            "tls_sessions": self.tls_sessions,
            "last_mail_size": self.last_mail_size,
        }
        temp = self.args.stats + ".tmp"
        with open(temp, "w") as f:
            json.dump(stats, f)
        os.replace(temp, self.args.stats)


def make_protocol(recorder, loop, args, context):
    class CountingSMTP(SMTP):
        # aiosmtpd calls connection_made again after STARTTLS on the same connection (once the
        # handshake is done); only the first call is a new connection.
        def connection_made(self, transport):
            new = getattr(self, "_original_transport", None) is None and self.transport is None
            super().connection_made(transport)
            if new:
                recorder.connection_opened()
            if not new or transport.get_extra_info("ssl_object") is not None:
                recorder.tls_sessions += 1
                recorder.write_stats()

        def connection_lost(self, error):
            if self.session is not None:
                recorder.transaction_closed(self.session)
            super().connection_lost(error)
            recorder.connection_closed()

        async def smtp_MAIL(self, arg):
            recorder.mail_command(self, arg)
            await super().smtp_MAIL(arg)

    kwargs = {}
    if args.ehlo_size:
        # aiosmtpd's own check would answer an oversized SIZE= before MAIL FROM's other checks
        # (authentication, a missing EHLO) and in words of its own; the handler checks instead.
        kwargs["data_size_limit"] = None
    if context is not None and not args.implicit_tls:
        kwargs["tls_context"] = context
        kwargs["require_starttls"] = False
    if args.auth:
        kwargs["auth_required"] = True
        kwargs["authenticator"] = recorder.check_credential
    # aiosmtpd only knows TLS it started itself (STARTTLS): under implicit TLS every connection
    # is encrypted, so its "AUTH needs TLS" rule would refuse AUTH everywhere.
    kwargs["auth_require_tls"] = not (args.auth_over_plain or args.implicit_tls)

    # hostname is fixed so start-up never waits on a reverse DNS lookup.
    return lambda: CountingSMTP(
        recorder, hostname="localhost", ident="channeld-test", loop=loop, **kwargs
    )


def quiet_auth_warnings():
    # aiosmtpd warns, on every connection, that AUTH required without TLS required is unsafe
    # (it is what --auth-over-plain and --implicit-tls ask for), and on every successful AUTH
    # that Session.login_data is deprecated (its own AUTH code sets it): the test's log would
    # fill with both.
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    noise = ("auth_require_tls == False", "Session.login_data is deprecated")
    logging.getLogger("mail.log").addFilter(
        lambda record: not any(n in record.getMessage() for n in noise)
    )


async def serve(args):
    loop = asyncio.get_running_loop()
    recorder = Recorder(args)
    recorder.write_stats()
    context = None
    if args.tls_cert:
        # A server context: no client certificates asked for, as aiosmtpd expects.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
    quiet_auth_warnings()
    protocol = make_protocol(recorder, loop, args, context)
    listen_ssl = context if args.implicit_tls else None
    server = await loop.create_server(protocol, "127.0.0.1", args.port, ssl=listen_ssl)
    port = server.sockets[0].getsockname()[1]
    # The same port on ::1 too, where one is free: a client given "localhost" (smtps_url(), for
    # the certificate's name) may try ::1 first and not fall back to 127.0.0.1.
    try:
        server6 = await loop.create_server(protocol, "::1", port, ssl=listen_ssl)
    except OSError:
        server6 = None
    print("PORT %d" % port, flush=True)

    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not os.read(0, 4096) else None)
    await stop.wait()
    server.close()
    if server6 is not None:
        server6.close()


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
    parser.add_argument("--pipelining", action="store_true")
    parser.add_argument("--ehlo-size", type=int, default=0)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--implicit-tls", action="store_true")
    parser.add_argument("--auth")
    parser.add_argument("--auth-over-plain", action="store_true")
    args = parser.parse_args()
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if args.implicit_tls and not args.tls_cert:
        parser.error("--implicit-tls needs --tls-cert and --tls-key")
    if args.auth and ":" not in args.auth:
        parser.error("--auth takes USER:PASSWORD")
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
