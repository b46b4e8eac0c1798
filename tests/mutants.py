"""Breaks `pretrain.train_step` one property at a time and checks that a test notices.

    python -m tests.mutants            # every mutant: one pytest run each
    python -m tests.mutants --list
    python -m tests.mutants --only=Shuffle-BN

Each mutant is a small source edit (the EMA formula, what the queue receives, a
gradient into the key encoder, the own-sample mask, the Shuffle-BN order, the query's
BN statistics) applied to a copy of the repository; the test named beside it must then
fail. A mutant that survives means its test cannot fail, and the run exits 1. The
repository itself is never modified. Not part of the pytest suite: it is the check
that the suite's step tests can fail (docs/results.md lists the last run).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEP_TESTS = 'tests/test_pretrain_step.py::'

# (what breaks, [(file, old text, new text), ...], the test that must catch it)
MUTANTS = [
  (
    'EMA step swapped: the key encoder moves by m instead of 1 - m',
    [
      (
        'skeljax/pretrain.py',
        'optax.incremental_update(online, state.key_params, 1.0 - momentum)',
        'optax.incremental_update(online, state.key_params, momentum)',
      )
    ],
    'test_ema_update_uses_the_configured_momentum',
  ),
  (
    'cosine momentum schedule replaced by a linear ramp',
    [('skeljax/pretrain.py', '0.5 * (jnp.cos(jnp.pi * frac) + 1.0)', '(1.0 - frac)')],
    'test_momentum_follows_the_run_length_and_the_cosine_schedule',
  ),
  (
    'the queue receives the queries instead of the positive keys',
    [
      (
        'skeljax/pretrain.py',
        'return loss, (batch_stats, key_bs, k_pos, metrics)',
        'return loss, (batch_stats, key_bs, jax.lax.stop_gradient(q[:b]), metrics)',
      )
    ],
    'test_queue_receives_the_positive_keys_and_ids_at_the_pointer',
  ),
  (
    'enqueue ignores the pointer (always writes row 0)',
    [
      (
        'skeljax/objectives.py',
        'keys.astype(queue.dtype), (ptr, 0))',
        'keys.astype(queue.dtype), (0, 0))',
      )
    ],
    'test_queue_receives_the_positive_keys_and_ids_at_the_pointer',
  ),
  (
    'gradient reaches the key encoder (every stop_gradient on the keys removed)',
    [
      ('skeljax/pretrain.py', 'jnp.split(jax.lax.stop_gradient(keys), ', 'jnp.split(keys, '),
      ('skeljax/objectives.py', '  k_pos = jax.lax.stop_gradient(k_pos)\n', ''),
      ('skeljax/objectives.py', 'q * jax.lax.stop_gradient(k_neg)', 'q * k_neg'),
    ],
    'test_no_gradient_reaches_the_key_encoder',
  ),
  (
    'InfoNCE ignores queue_valid (own keys count as negatives)',
    [
      (
        'skeljax/objectives.py',
        'queue_logits = jnp.where(queue_valid, queue_logits, _MASKED)',
        'queue_logits = queue_logits',
      )
    ],
    'test_own_sample_keys_are_dropped_from_the_negatives',
  ),
  (
    'train_step never builds the own-id mask',
    [
      (
        'skeljax/pretrain.py',
        'queue_valid = None if ids is None else ids[:, None] != state.queue_ids[None, :]',
        'queue_valid = None',
      )
    ],
    'test_train_step_masks_the_queries_own_ids',
  ),
  (
    'Shuffle-BN output left in the shuffled order',
    [('skeljax/pretrain.py', 'return pooled[jnp.argsort(perm)], bs', 'return pooled, bs')],
    'test_shuffle_bn_restores_the_sample_order',
  ),
  (
    'Shuffle-BN undone with the permutation instead of its inverse',
    [('skeljax/pretrain.py', 'return pooled[jnp.argsort(perm)], bs', 'return pooled[perm], bs')],
    'test_shuffle_bn_restores_the_sample_order',
  ),
  (
    'query BN statistics averaged over the broken clips too',
    [
      (
        'skeljax/pretrain.py',
        'kept = stats_groups if stats_groups > 0 else groups',
        'kept = groups',
      )
    ],
    'test_query_bn_statistics_come_from_the_natural_clips_only',
  ),
]


def _copy_repo(dst: str) -> None:
  skip = shutil.ignore_patterns(
    '.git', '.venv', 'runs', '__pycache__', '.pytest_cache', '*.egg-info'
  )
  for name in ('skeljax', 'tests', 'configs', 'tfds_builders'):
    shutil.copytree(os.path.join(REPO, name), os.path.join(dst, name), ignore=skip)
  shutil.copy(os.path.join(REPO, 'pyproject.toml'), dst)


def run_mutant(edits, test: str) -> tuple[bool, str]:
  """(caught, evidence): applies `edits` to a copy of the repo and runs `test` there."""
  with tempfile.TemporaryDirectory(prefix='skeljax_mutant_') as tree:
    _copy_repo(tree)
    for path, old, new in edits:
      full = os.path.join(tree, path)
      with open(full) as f:
        text = f.read()
      if old not in text:
        raise SystemExit(
          f'mutant out of date: {old!r} is no longer in {path}; update tests/mutants.py'
        )
      with open(full, 'w') as f:
        f.write(text.replace(old, new))
    r = subprocess.run(
      [sys.executable, '-m', 'pytest', '-q', '-x', '-p', 'no:cacheprovider', STEP_TESTS + test],
      cwd=tree,
      capture_output=True,
      text=True,
      env={**os.environ, 'PYTHONPATH': tree},
    )
  lines = r.stdout.splitlines()
  evidence = next((ln for ln in lines if ln.startswith('E ')), lines[-1] if lines else '')
  return r.returncode == 1, evidence.strip()


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--list', action='store_true', help='print the mutants and exit')
  parser.add_argument('--only', default='', help='run the mutants whose name contains this')
  parser.add_argument('--json', help='also write the results to this file')
  args = parser.parse_args(argv)
  if args.list:
    for name, _, test in MUTANTS:
      print(f'{name}  ->  {test}')
    return 0
  results = []
  for name, edits, test in MUTANTS:
    if args.only not in name:
      continue
    caught, evidence = run_mutant(edits, test)
    results.append({'mutant': name, 'test': test, 'caught': caught, 'evidence': evidence})
    print(f'{"caught  " if caught else "SURVIVED"} {name}: {evidence}', flush=True)
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(results, f, indent=1)
  survived = [r['mutant'] for r in results if not r['caught']]
  print(f'{len(results) - len(survived)} of {len(results)} mutants caught', flush=True)
  return 1 if survived else 0


if __name__ == '__main__':
  sys.exit(main())
