"""A decode worker process: `python -m mlcl_executor.decode_worker PARENT_PID` (started by `decoding.ImageDecoder`).

Reads a `DecodeSpec`, then `(key, values, thumbnails)` chunks from stdin (pickles from the encoder);
answers `(key, results)` on stdout in `decoding.pack_results`' fixed layout (never a pickle). Exits at the end of its input, or when its parent
process is gone. Imports PIL and numpy, not torch.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time


def _exit_with(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def main() -> None:
    # Ctrl-C reaches the whole process group: the encoder closes its workers; no traceback from here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with, args=(int(sys.argv[1]),), daemon=True).start()
    import pickle

    from mlcl_executor.decoding import decode_many, pack_results, read_frame, write_frame

    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must not corrupt the answers
    try:
        spec = pickle.loads(read_frame(inp))  # from the parent encoder: its own objects
        while True:
            key, values, thumbnails = pickle.loads(read_frame(inp))
            write_frame(out, pack_results(key, decode_many(values, spec, thumbnails)))
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        pass


if __name__ == "__main__":
    main()
