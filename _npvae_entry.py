"""The ``npvae`` command's entry point (setup.cfg, console_scripts).

Importing npvae (NumPy, SciPy) takes a second or two, and a Ctrl-C in that window would end
in a KeyboardInterrupt traceback: this module, which imports nothing heavy, catches it (and
SIGTERM) around the import, then hands over to :func:`npvae.cli.main`, which handles both
itself from then on.
"""

import signal
import sys


class _Terminated(KeyboardInterrupt):
    pass


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated()


def main() -> int:
    """Import npvae.cli and run it; Ctrl-C or SIGTERM during the import exit 130 or 143, one line."""
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        from npvae.cli import main as cli_main
    except KeyboardInterrupt as interrupt:
        terminated = isinstance(interrupt, _Terminated)
        print(f"\nnpvae: {'terminated (SIGTERM)' if terminated else 'interrupted'} while starting",
              file=sys.stderr)
        return 143 if terminated else 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    return cli_main()


if __name__ == "__main__":
    raise SystemExit(main())
