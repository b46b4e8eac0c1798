"""Builds one dataset without TensorFlow, the way a skeljax run prepares it.

  python -m tfds_builders.build <name>/<config> [--data_dir=DIR] [--manual_dir=DIR]
  python -m tfds_builders.build nw_ucla/xview --manual_dir=/data/nw_ucla
  python -m tfds_builders.build skeleton_folder/kinect20 --manual_dir=/data/my_folder

It is `skeljax.data.prepare`: the builder's `download_and_prepare` with
`DownloadConfig(manual_dir=...)` into `data_dir/<name>/<config>/<version>/`, in
array_record. `tfds build` is not used because the `tfds` command imports TensorFlow
before it parses its arguments (docs/data.md). Bad input prints one
`tfds_builders.build: error:` line and exits with code 2; a failed build leaves nothing
that reads as prepared.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
  from skeljax import config as config_lib
  from skeljax import data

  defaults = config_lib.base_config().data
  parser = argparse.ArgumentParser(
    prog='python -m tfds_builders.build', description=__doc__.splitlines()[0]
  )
  parser.add_argument('dataset', help='<name>/<config>, e.g. nw_ucla/xview')
  parser.add_argument('--data_dir', default=defaults.data_dir, help=f'default: {defaults.data_dir}')
  parser.add_argument(
    '--manual_dir', default='', help="the raw files (the builder's README says which)"
  )
  args = parser.parse_args(argv)
  name, _, builder_config = args.dataset.partition('/')
  defaults.update(
    name=name, config=builder_config, data_dir=args.data_dir, manual_dir=args.manual_dir
  )
  try:
    data.prepare(defaults)  # prints what it prepared, or what was there
  except data.DataError as e:
    print(f'tfds_builders.build: error: {" ".join(str(e).split())}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  sys.exit(main())
