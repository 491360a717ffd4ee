"""What the small demos share: the --data-dir option, and loading the train and test splits it names.

Not a demo: ae_vs_vae.py, beta_sweep.py, latent_map.py and seed_vae.py import it from this folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import npvae


def add_data_dir_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--data-dir DIR`` (a Path, default None) to ``parser``: where the IDX files are."""
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="directory with the MNIST / Fashion-MNIST IDX files (default: $NPVAE_DATA/<data>, "
                             "$NPVAE_MNIST_DIR for MNIST, else ~/.cache/npvae/<data>)")


def load_train_test(parser: argparse.ArgumentParser,
                    args: argparse.Namespace) -> tuple[npvae.datasets.Dataset, npvae.datasets.Dataset]:
    """The train and test splits of ``args.data`` read from ``args.data_dir`` (None: npvae's default place).

    Exits as argparse does, with one line on stderr and no traceback: status 2 when --data-dir is
    not a directory, status 1 when the files are missing and cannot be downloaded, or unreadable.
    """
    if args.data_dir is not None and not args.data_dir.is_dir():
        parser.error(f"--data-dir {args.data_dir}: no such directory")
    try:
        train = npvae.datasets.load(args.data, "train", args.data_dir)
        test = npvae.datasets.load(args.data, "test", args.data_dir)
    except OSError as error:  # files missing and not downloadable, or unreadable
        parser.exit(1, f"{parser.prog}: error: {error}\n")
    return train, test
