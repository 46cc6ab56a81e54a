#!/usr/bin/python3
"""The disk's fdatasync latency as the hit journal meets it: a 3 KB pwrite into a file already
written out as zeros, then fdatasync, in a loop for SECONDS. With --zeroing, a second process
writes a 4 MiB file of zeros and fsyncs it every second beside it, as the journal's spare
thread does. With --threads=N, N threads each loop on a file of their own at once: whether the
device overlaps flushes or takes them one at a time (then N threads get little more syncs per
second than one, each waiting N times as long). Prints syncs per second, p50, p99, p99.9, max
and the share of time spent in syncs over 2 ms. With --direct, the file is opened with O_DIRECT
and each write is a whole 4 KB block from aligned memory, as the hit journal writes where the
file system takes O_DIRECT.

    bench/fsync_latency.py DIR [SECONDS] [--zeroing] [--threads=N] [--direct]
        (DIR: paths.state's filesystem)
"""
import mmap
import os
import sys
import threading
import time


DIRECT = "--direct" in sys.argv


def zero_loop(directory):
    n = 0
    while True:
        path = os.path.join(directory, "fsync-latency-zeros.%d" % (n % 2))
        n += 1
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, b"\0" * (4 << 20))
        os.fsync(fd)
        os.close(fd)
        time.sleep(1.0)


def sync_loop(path, seconds, out):
    size = 64 << 20
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    latencies = []
    try:
        for _ in range(size // (4 << 20)):
            os.write(fd, b"\0" * (4 << 20))
        os.fsync(fd)
        line = b"x" * 3000
        if DIRECT:
            os.close(fd)
            fd = os.open(path, os.O_RDWR | os.O_DIRECT)
            line = mmap.mmap(-1, 4096)  # page-aligned, as O_DIRECT wants
            line.write(b"x" * 4096)
        offset = 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            start = time.perf_counter()
            os.pwrite(fd, line, offset)
            os.fdatasync(fd)
            latencies.append(time.perf_counter() - start)
            offset = (offset + len(line)) % (size - len(line))
            if DIRECT:
                offset -= offset % 4096
    finally:
        os.close(fd)
        os.unlink(path)
    out.extend(latencies)  # list.extend holds the GIL: safe across threads


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if not args:
        sys.exit(__doc__)
    directory = args[0]
    seconds = float(args[1]) if len(args) > 1 else 5.0
    zeroer = None
    if "--zeroing" in sys.argv:
        zeroer = os.fork()
        if zeroer == 0:
            zero_loop(directory)
    threads = 1
    for a in sys.argv[1:]:
        if a.startswith("--threads="):
            threads = max(1, int(a.split("=", 1)[1]))
    latencies = []
    try:
        workers = [threading.Thread(target=sync_loop, args=(os.path.join(
            directory, "fsync-latency.%d.bin" % n), seconds, latencies)) for n in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    finally:
        if zeroer:
            os.kill(zeroer, 9)
            os.waitpid(zeroer, 0)
            for n in range(2):
                try:
                    os.unlink(os.path.join(directory, "fsync-latency-zeros.%d" % n))
                except FileNotFoundError:
                    pass
    slow = sum(x for x in latencies if x > 0.002) / sum(latencies)
    latencies.sort()
    n = len(latencies)
    print("%s%d thread(s), %d syncs, %.0f a second: p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, "
          "max %.2f ms; %.1f%% of the time in syncs over 2 ms"
          % ("O_DIRECT, " if DIRECT else "", threads, n, n / seconds, latencies[n // 2] * 1e3,
             latencies[n * 99 // 100] * 1e3,
             latencies[n * 999 // 1000] * 1e3, latencies[-1] * 1e3, 100 * slow))


if __name__ == "__main__":
    main()
