"""NTU RGB+D `.skeleton` files: a fast whole-file parser and the body selection.

The text format (CRLF or LF line endings):

  line 1            frame count F
  per frame         body count B
    per body        10 body-info values: bodyID clippedEdges handLeftConfidence
                    handLeftState handRightConfidence handRightState isRestricted
                    leanX leanY trackingState
                    joint count (25)
                    25 lines of 12 values: x y z depthX depthY colorX colorY
                    orientationW orientationX orientationY orientationZ trackingState

`parse_skeleton` reads a whole file with NumPy instead of line by line: one
pass finds every token's byte range, a Python walk steps once per body record
(not per line or value) to locate the joint blocks, a vectorised check confirms
every line holds exactly the values the format puts there, and the x, y, z
tokens are converted together by `decimal_values`. Body IDs stay as bytes
because they are 17-digit integers that float64 cannot tell apart.

`select_bodies` turns the parsed records into a fixed [T, M, V, 3] array with a
documented, deterministic rule (see `BodySelection`).
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from tfds_builders.common import BadFileError

NUM_JOINTS = 25
BODY_INFO_VALUES = 10
JOINT_VALUES = 12
# Tokens of one body record: the info line, the joint count, then the joints.
_BODY_TOKENS = BODY_INFO_VALUES + 1 + NUM_JOINTS * JOINT_VALUES
_NUMERIC_BYTES = b'0123456789.-+eE \t\r\n'
_NOT_NUMERIC = re.compile(rb'[^0-9.+\-eE \t\r\n]')
# Token offsets of x, y, z inside a body's joint block: [V * 3].
_XYZ_OFFSETS = (np.arange(NUM_JOINTS)[:, None] * JOINT_VALUES + np.arange(3)[None, :]).ravel()
_JOINT_LINE_OFFSETS = np.arange(NUM_JOINTS) * JOINT_VALUES
# Tokens longer than 16 bytes, with an exponent or with more than 15
# significant digits go through Python's float() instead of `decimal_values`.
_MAX_DIGITS = 15
# _INSIDE[n]: two uint64 words whose bytes are 1 in the last n of 16 columns,
# where a right-aligned token of n bytes lies.
_INSIDE = (np.arange(16)[None, :] >= 16 - np.arange(17)[:, None]).astype(np.uint8).view(np.uint64)
_POW10_INT = 10 ** np.arange(17, dtype=np.uint64)
_POW10_FLOAT = 10.0 ** np.arange(17)
_U1, _U10, _U255 = np.uint64(1), np.uint64(10), np.uint64(255)
# Multiply-shift steps that turn 8 digit bytes (first digit in the lowest byte)
# into their integer value: pairs, then quadruples, then all eight.
_SWAR = tuple(
  (np.uint64(mask), np.uint64(mul), np.uint64(shift))
  for mask, mul, shift in (
    (0x0F0F0F0F0F0F0F0F, 10 * 256 + 1, 8),
    (0x00FF00FF00FF00FF, 100 * 65536 + 1, 16),
    (0x0000FFFF0000FFFF, 10000 * 2**32 + 1, 32),
  )
)


@dataclasses.dataclass(frozen=True)
class SkeletonRecords:
  """Every body record of one file.

  Attributes:
    n_frames: F, the frame count announced by (and verified against) the file.
    frame: int32 [N], frame index of each body record.
    body_id: N bodyID tokens (bytes), the tracker's identity of each record.
    xyz: float32 [N, 25, 3], camera-space joint positions in metres.
  """

  n_frames: int
  frame: np.ndarray
  body_id: tuple[bytes, ...]
  xyz: np.ndarray


def _line_of(data: bytes, offset: int) -> int:
  return data.count(b'\n', 0, int(offset)) + 1


def _tokenize(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Start and end byte offsets [n_tokens] of the whitespace-separated tokens."""
  # Whitespace flags with a whitespace sentinel on both sides: every token is a
  # run of False, and its boundaries are where the flag flips.
  space = np.ones(buf.size + 2, bool)
  np.less_equal(buf, 32, out=space[1:-1])  # space, tab, CR, LF
  edges = np.flatnonzero(space[1:] != space[:-1])
  return edges[0::2], edges[1::2]


def decimal_values(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray):
  """Vectorised reading of plain decimal tokens such as `-0.1705678`.

  Each token is right-aligned in 16 bytes, loaded as two little-endian uint64
  words (8 columns each). Byte-wise tests mark digits and the dot; popcounts of
  the words count them; three multiply-shift steps per word turn the digit
  bytes into integers (SWAR, no per-character loop). The dot's column counts
  as a zero digit and is removed with exact integer arithmetic, and one
  division by 10**fraction_digits rounds correctly, so each value equals
  Python's float() of its token.

  Args:
    buf: uint8 [n] the file bytes.
    starts, ends: int [K] byte offsets of the tokens to read.

  Returns:
    (float64 [K] values, bool [K] read): tokens with `read` False (exponents,
    misplaced signs, several dots, more than 15 digits, malformed, or ending in
    the first 16 bytes) are left to the caller.
  """
  length = ends - starts
  first = buf[starts]
  negative = first == 45
  body = length - (negative | (first == 43))  # bytes after the sign
  # An unaligned uint64 view at every byte offset: a token's two words are two gathers.
  words = np.ndarray((buf.size - 7,), np.uint64, buffer=buf, strides=(1,))
  at = np.maximum(ends - 16, 0)
  rows = np.empty((len(at), 2), np.uint64)
  rows[:, 0] = words[at]
  rows[:, 1] = words[at + 8]
  raw = rows.view(np.uint8)  # [K, 16]
  digit = raw - np.uint8(48)
  inside = _INSIDE[np.minimum(body, 16)]
  is_digit = (digit < 10).view(np.uint64) & inside  # [K, 2], bytes 0 or 1
  is_dot = (raw == 46).view(np.uint64) & inside
  n_digits = np.bitwise_count(is_digit[:, 0]) + np.bitwise_count(is_digit[:, 1])
  n_dots = np.bitwise_count(is_dot[:, 0]) + np.bitwise_count(is_dot[:, 1])
  read = (n_digits + n_dots == body) & (n_dots <= 1) & (n_digits >= 1)
  read &= (n_digits <= _MAX_DIGITS) & (length <= 16) & (ends >= 16)
  value = digit.view(np.uint64) & (is_digit * _U255)
  for mask, mul, shift in _SWAR:
    value = ((value & mask) * mul) >> shift
  total = value[:, 0] * _POW10_INT[8] + value[:, 1]
  # The dot's column: a word with one set bit b has popcount(word - 1) = b.
  low_dot, high_dot = is_dot[:, 0], is_dot[:, 1]
  column = np.where(
    high_dot != 0, 8 + np.bitwise_count(high_dot - _U1) // 8, np.bitwise_count(low_dot - _U1) // 8
  )
  has_dot = n_dots == 1
  fraction = np.where(has_dot, 15 - column.astype(np.int64), 0)
  low = total % _POW10_INT[fraction]  # the digits right of the dot
  mantissa = np.where(has_dot, low + (total - low) // _U10, total)
  values = mantissa.astype(np.float64) / _POW10_FLOAT[fraction]
  return np.where(negative, -values, values), read


def _count(data: bytes, start: int, end: int, what: str) -> int:
  token = data[start:end]
  try:
    value = int(token)
  except ValueError:
    value = -1
  if value < 0:
    raise BadFileError(f'expected a {what}, got {token[:20]!r}', _line_of(data, start))
  return value


def parse_skeleton(data: bytes) -> SkeletonRecords:
  """Parses the bytes of one `.skeleton` file.

  Raises:
    BadFileError: with the 1-based line number, for a non-numeric field, a
      joint count other than 25, a line with the wrong number of values, fewer
      frames than announced, or values after the last announced frame.
  """
  if data.translate(None, _NUMERIC_BYTES):
    at = _NOT_NUMERIC.search(data).start()
    text = data[data.rfind(b'\n', 0, at) + 1 :].split(b'\n', 1)[0].strip()[:40]
    raise BadFileError(f'non-numeric field in {text!r}', _line_of(data, at))
  buf = np.frombuffer(data, np.uint8)
  if not data.strip():
    raise BadFileError('empty file', 1)
  starts, ends = _tokenize(buf)
  n_tokens = len(starts)
  line_first = np.ones(n_tokens, bool)
  line_first[1:] = buf[starts[1:] - 1] == 10
  heads = np.flatnonzero(line_first)
  per_line = np.diff(heads, append=n_tokens)
  odd = np.flatnonzero(
    (per_line != 1) & (per_line != BODY_INFO_VALUES) & (per_line != JOINT_VALUES)
  )
  if len(odd):
    i = heads[odd[0]]
    raise BadFileError(
      f'line has {per_line[odd[0]]} values; a line holds a count, the {BODY_INFO_VALUES} '
      f'body-info values or the {JOINT_VALUES} values of one joint',
      _line_of(data, starts[i]),
    )
  n_frames = _count(data, starts[0], ends[0], 'frame count')
  pos = 1
  line_heads, blocks, frames, ids = [0], [], [], []
  for f in range(n_frames):
    if pos >= n_tokens:
      where = _line_of(data, len(data.rstrip()))
      raise BadFileError(f'file ends after {f} of {n_frames} announced frames', where)
    n_bodies = _count(data, starts[pos], ends[pos], 'body count')
    line_heads.append(pos)
    pos += 1
    for b in range(n_bodies):
      if pos + _BODY_TOKENS > n_tokens:
        raise BadFileError(
          f'file ends inside body {b + 1} of frame {f + 1} ({n_frames} frames announced)',
          _line_of(data, starts[pos] if pos < n_tokens else len(data.rstrip())),
        )
      j = pos + BODY_INFO_VALUES
      n_joints = _count(data, starts[j], ends[j], 'joint count')
      if n_joints != NUM_JOINTS:
        raise BadFileError(f'{n_joints} joints, expected {NUM_JOINTS}', _line_of(data, starts[j]))
      ids.append(data[starts[pos] : ends[pos]])
      frames.append(f)
      blocks.append(j + 1)
      line_heads.extend((pos, j))
      pos += _BODY_TOKENS
  if pos != n_tokens:
    raise BadFileError(
      f'{n_tokens - pos} values after the last announced frame', _line_of(data, starts[pos])
    )
  blocks = np.asarray(blocks, np.int64)
  expected = np.zeros(n_tokens, bool)
  expected[line_heads] = True
  expected[(blocks[:, None] + _JOINT_LINE_OFFSETS[None, :]).ravel()] = True
  if not np.array_equal(line_first, expected):
    # Right value counts, wrong order, e.g. a joint line where a body-info line belongs.
    i = int(np.argmax(line_first != expected))
    raise BadFileError('wrong kind of line for this place in the file', _line_of(data, starts[i]))

  if not len(blocks):
    xyz = np.zeros((0, NUM_JOINTS, 3), np.float32)
  else:
    index = (blocks[:, None] + _XYZ_OFFSETS[None, :]).ravel()
    s, e = starts[index], ends[index]
    values, read = decimal_values(buf, s, e)
    for k in np.flatnonzero(~read):
      try:
        values[k] = float(data[s[k] : e[k]])
      except ValueError:
        raise BadFileError(
          f'coordinate {data[s[k] : e[k]][:20]!r} is not a number', _line_of(data, s[k])
        ) from None
    xyz = values.astype(np.float32).reshape(len(blocks), NUM_JOINTS, 3)
    if not np.isfinite(xyz).all():
      k = int(np.argmin(np.isfinite(xyz).reshape(-1)))
      raise BadFileError(f'coordinate {data[s[k] : e[k]]!r} is not finite', _line_of(data, s[k]))
  return SkeletonRecords(
    n_frames=n_frames, frame=np.asarray(frames, np.int32), body_id=tuple(ids), xyz=xyz
  )


@dataclasses.dataclass(frozen=True)
class BodySelection:
  """The deterministic rule that maps body records to M person slots (v1).

  1. Records are grouped into tracks by bodyID.
  2. Spurious tracks are dropped: tracks seen in fewer than `min_frames` frames,
     and tracks whose x-extent exceeds `spread_ratio` times their y-extent in
     more than `max_wide_fraction` of their frames (a standing or sitting
     person is taller than wide; furniture and reflections often are not).
     If these filters would drop every track, none is dropped.
  3. The remaining tracks are ranked by motion energy, the sum over joints and
     coordinates of the variance over time (ties: earlier first appearance).
  4. In rank order each track goes into the first of the M slots whose frames
     it does not overlap (so a person whose ID changed mid-sequence stays in one
     slot); a track that fits nowhere is dropped.
  5. Slots are ordered by first appearance (first record in the file); a slot
     is zero where its person is absent. Frames in which no slot holds a
     person are removed, so the motion never jumps to the origin.
  """

  max_bodies: int = 2
  min_frames: int = 11
  spread_ratio: float = 0.8
  max_wide_fraction: float = 0.69
  version: str = '1'

  def as_metadata(self) -> dict:
    return dataclasses.asdict(self)


def _is_spurious(extent: np.ndarray, rule: BodySelection) -> bool:
  """`extent`: float [n, 2] x and y extent of one track in each of its frames."""
  if extent.shape[0] < rule.min_frames:
    return True
  wide = extent[:, 0] > rule.spread_ratio * extent[:, 1]
  return float(wide.mean()) > rule.max_wide_fraction


def select_bodies(records: SkeletonRecords, rule: BodySelection = BodySelection()) -> np.ndarray:
  """Applies `rule` to a file's records.

  Returns:
    float32 [T, M, 25, 3] with M = rule.max_bodies and T <= records.n_frames
    (T = 0 when no body was ever tracked).
  """
  m = rule.max_bodies
  order, members = [], {}
  for i, body in enumerate(records.body_id):
    if body not in members:
      members[body] = []
      order.append(body)
    members[body].append(i)
  tracks = [np.asarray(members[b]) for b in order]  # record indices, in first-appearance order
  # Joints last and contiguous, so the extent is a fast last-axis reduction.
  xy = np.ascontiguousarray(records.xyz[:, :, :2].transpose(0, 2, 1))  # [N, 2, 25]
  extent = xy.max(axis=-1) - xy.min(axis=-1)  # [N, 2]
  kept = [t for t in tracks if not _is_spurious(extent[t], rule)] or tracks

  def energy(t):
    return float(records.xyz[t].var(axis=0).sum()) if len(t) > 1 else 0.0

  ranked = sorted(kept, key=lambda t: (-energy(t), int(t[0])))
  occupied = np.zeros((m, records.n_frames), bool)
  slots = [[] for _ in range(m)]
  for t in ranked:
    f = records.frame[t]
    for s in range(m):
      if not occupied[s, f].any():
        occupied[s, f] = True
        slots[s].append(t)
        break

  def first_record(s):  # record order is file order: frames, then bodies within a frame
    return min(int(t[0]) for t in slots[s]) if slots[s] else len(records.body_id)

  out = np.zeros((records.n_frames, m, NUM_JOINTS, 3), np.float32)
  for new, s in enumerate(sorted(range(m), key=first_record)):
    for t in slots[s]:
      out[records.frame[t], new] = records.xyz[t]
  return out[occupied.any(axis=0)]
