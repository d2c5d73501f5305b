"""The Redis state store's Lua scripts, and the sans-IO decoding of their replies.

Each store operation is one script, run atomically by Redis: the same state machine as
:class:`~otel_resilience.stores.InMemoryStateStore` (the reference model), on Redis
server time. The sync and async stores in :mod:`otel_resilience.stores.redis` share
everything here and differ only in how they send a script and wait for its reply.

A breaker ``name`` under ``namespace`` owns three keys, all in the cluster hash slot of
the name (the ``{...}`` hash tag):

``{namespace}:{{name}}``
    a hash: the state (fields documented in :data:`PRELUDE`);
``{namespace}:{{name}}:trials``
    a sorted set: the trial leases of the current half-open period, lease id -> expiry;
``{namespace}:{{name}}:ring``
    a string: the count window, one ASCII digit per call (``'0'`` to ``'3'``, the
    FAILURE | SLOW flags), written with SETRANGE.

Every reply is a flat array of integers and strings::

    [problem key (0: none, 1 hash, 2 trials, 3 ring), problem field, problem value,
     <the operation's head>,
     state, generation, open remaining (us), consecutive failures, open count, trials,
     (previous state, state, reason, ago (us)) for each transition made, oldest first]

States travel as indices into :data:`STATES`; durations as integer microseconds.
"""

from __future__ import annotations

from typing import Any, Final

from otel_resilience.breaker._state import CircuitState
from otel_resilience.breaker._window import TIME_WINDOW_BUCKETS
from otel_resilience.stores._protocol import (
    Admission,
    AdmissionKind,
    Report,
    StoreParams,
    StoreView,
    Transition,
)

__all__ = [
    "ACQUIRE_SCRIPT",
    "COMMAND_SCRIPT",
    "MAX_PROBLEM_VALUE_CHARS",
    "PRELUDE",
    "READ_SCRIPT",
    "REPORT_SCRIPT",
    "STATES",
    "breaker_keys",
    "decode_admission",
    "decode_command",
    "decode_report",
    "decode_view",
    "params_args",
    "problem_message",
]

STATES: Final = (
    CircuitState.CLOSED,
    CircuitState.OPEN,
    CircuitState.HALF_OPEN,
    CircuitState.FORCED_OPEN,
    CircuitState.DISABLED,
)
"""The states by the index the scripts reply with (the hash stores their values)."""

MAX_PROBLEM_VALUE_CHARS: Final = 64
"""Malformed values are cut to this many bytes before they are reported."""

_KINDS: Final = (
    AdmissionKind.ADMITTED,
    AdmissionKind.TRIAL,
    AdmissionKind.REJECTED,
    AdmissionKind.DISABLED,
)

# Reply offsets: three problem slots, then the operation's head, then the view.
_PROBLEM_SLOTS: Final = 3
_VIEW_SLOTS: Final = 6
_ADMISSION_VIEW: Final = _PROBLEM_SLOTS + 3
_REPORT_VIEW: Final = _PROBLEM_SLOTS + 1
_PLAIN_VIEW: Final = _PROBLEM_SLOTS

_KEY_ROLES: Final = ("", "hash", "trials", "ring")

PRELUDE: Final = (
    r"""
-- One shared circuit breaker's state machine, applied atomically by Redis. It is the
-- state machine of otel_resilience.stores.InMemoryStateStore (the reference model):
-- change one, change the other.
--
-- KEYS[1]  the breaker's hash (fields below)
-- KEYS[2]  its trial leases: ZSET lease id -> lease expiry
-- KEYS[3]  its count window: one ASCII digit per call, '0'..'3' (FAILURE=1 | SLOW=2)
-- ARGV[1..10]  the caller's StoreParams (otel_resilience/stores/_redis_scripts.py,
--              params_args); ARGV[11..] the operation's own arguments
--
-- Time is the server's (TIME), in microseconds since the epoch, never the client's.
-- Lua numbers are doubles: every number written goes through num() ('%.17g'), exact for
-- the integers used here (all below 2^53); Redis's own conversion keeps 14 digits.
--
-- Hash fields (the script writes these and nothing else; any other field is malformed):
--   state            closed | open | half_open | forced_open | disabled
--   generation       +1 on every transition and on RESET while closed; a new state
--                    starts at the server time in microseconds, so it is above every
--                    generation an earlier state of the same name handed out (one
--                    operation makes at most two transitions, and takes well over 2 us)
--   last_lease       the last trial lease id handed out (starts at the same time)
--   failures         the failure streak while closed
--   open_count       openings since the breaker last closed
--   trial_successes  successful trials in the current half-open period
--   open_until       end of the open period (microseconds)
--   count window: window_size, window_next (ring offset of the next call),
--                 window_calls, window_failures, window_slow
--   time window:  window_seconds, window_head (start of the newest bucket; '' while
--                 empty), bucket_calls, bucket_failures, bucket_slow (comma-separated
--                 counts, newest bucket first)
-- Malformed data anywhere (a wrong key type, a field the script did not write) aborts
-- the first attempt; the epilogue then deletes the keys, starts a fresh state and runs
-- the operation again, replying with what it found.

local HASH, TRIALS, RING = KEYS[1], KEYS[2], KEYS[3]
local BUCKETS = """
    + str(TIME_WINDOW_BUCKETS)
    + r"""
local MAX_INTEGER = 9007199254740992  -- 2^53: doubles are exact below it
local STATE_CODES = {closed = 0, open = 1, half_open = 2, forced_open = 3, disabled = 4}
local RING_FLAGS = {['0'] = 0, ['1'] = 1, ['2'] = 2, ['3'] = 3}
local FIELDS = {
  state = true, generation = true, last_lease = true, failures = true, open_count = true,
  trial_successes = true, open_until = true, window_size = true, window_next = true,
  window_calls = true, window_failures = true, window_slow = true, window_seconds = true,
  window_head = true, bucket_calls = true, bucket_failures = true, bucket_slow = true,
}

local failure_threshold = tonumber(ARGV[1])
local success_threshold = tonumber(ARGV[2])
local half_open_max_calls = tonumber(ARGV[3])
local lease_us = tonumber(ARGV[4]) * 1000000
local minimum_calls = tonumber(ARGV[5])
local failure_rate_threshold = tonumber(ARGV[6])    -- nil when not set ('')
local slow_call_rate_threshold = tonumber(ARGV[7])
local window_size = tonumber(ARGV[8])
local window_seconds = tonumber(ARGV[9])
local ttl_ms = ARGV[10]

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])

local s             -- the breaker's state (load() or fresh())
local dirty = false -- whether the hash must be written back
local moves = {}    -- transitions made by this call, flat: previous, state, reason, ago

local function num(n)
  return string.format('%.17g', n)
end

-- Abort this attempt: the epilogue resets the keys and runs the operation again.
local function malformed(where, field, value)
  error({malformed = true, where = where, field = field, value = value})
end

-- A command on KEYS[where]; a key of another type is malformed data, not a crash.
local function call(where, ...)
  local reply = redis.pcall(...)
  if type(reply) == 'table' and reply.err then
    if string.find(reply.err, 'WRONGTYPE', 1, true) then
      malformed(where, '(type)', redis.call('TYPE', KEYS[where]).ok)
    end
    error(reply)
  end
  return reply
end

local function integer(fields, name, least)
  local value = fields[name]
  local n = tonumber(value or '')
  -- NaN fails n == floor(n); infinities fail the bound.
  if n == nil or n ~= math.floor(n) or n < least or n >= MAX_INTEGER then
    malformed(1, name, value)
  end
  return n
end

local function finite(fields, name, positive)
  local value = fields[name]
  local n = tonumber(value or '')
  if n == nil or n ~= n or n < 0 or n >= math.huge or (positive and n == 0) then
    malformed(1, name, value)
  end
  return n
end

local function counts(fields, name)
  local value = fields[name]
  local list = {}
  for item in string.gmatch(value or '', '[^,]+') do
    local n = tonumber(item)
    if n == nil or n ~= math.floor(n) or n < 0 or n >= MAX_INTEGER then
      malformed(1, name, value)
    end
    list[#list + 1] = n
  end
  if #list ~= BUCKETS then
    malformed(1, name, value)
  end
  return list
end

local function zeros()
  local list = {}
  for i = 1, BUCKETS do
    list[i] = 0
  end
  return list
end

local function load_count_window(f, st)
  st.window = 'count'
  st.window_size = integer(f, 'window_size', 1)
  st.window_next = integer(f, 'window_next', 0)
  st.window_calls = integer(f, 'window_calls', 0)
  st.window_failures = integer(f, 'window_failures', 0)
  st.window_slow = integer(f, 'window_slow', 0)
  if st.window_next >= st.window_size then
    malformed(1, 'window_next', f.window_next)
  end
  if st.window_calls > st.window_size then
    malformed(1, 'window_calls', f.window_calls)
  end
  if st.window_failures > st.window_calls then
    malformed(1, 'window_failures', f.window_failures)
  end
  if st.window_slow > st.window_calls then
    malformed(1, 'window_slow', f.window_slow)
  end
end

local function load_time_window(f, st)
  st.window = 'time'
  st.window_seconds = finite(f, 'window_seconds', true)
  if f.window_head ~= nil and f.window_head ~= '' then
    st.window_head = finite(f, 'window_head', false)
  end
  st.bucket_calls = counts(f, 'bucket_calls')
  st.bucket_failures = counts(f, 'bucket_failures')
  st.bucket_slow = counts(f, 'bucket_slow')
  -- The totals are the buckets' sums, recomputed rather than stored twice.
  st.window_calls, st.window_failures, st.window_slow = 0, 0, 0
  for i = 1, BUCKETS do
    local calls = st.bucket_calls[i]
    if st.bucket_failures[i] > calls then
      malformed(1, 'bucket_failures', f.bucket_failures)
    end
    if st.bucket_slow[i] > calls then
      malformed(1, 'bucket_slow', f.bucket_slow)
    end
    st.window_calls = st.window_calls + calls
    st.window_failures = st.window_failures + st.bucket_failures[i]
    st.window_slow = st.window_slow + st.bucket_slow[i]
  end
  if st.window_head == nil and st.window_calls > 0 then
    malformed(1, 'window_head', f.window_head)
  end
end

-- The stored state, or nil when there is none (never written, expired or deleted).
local function load()
  local flat = call(1, 'HGETALL', HASH)
  if #flat == 0 then
    return nil
  end
  local f = {}
  for i = 1, #flat, 2 do
    if not FIELDS[flat[i]] then
      malformed(1, flat[i], flat[i + 1])
    end
    f[flat[i]] = flat[i + 1]
  end
  if STATE_CODES[f.state or ''] == nil then
    malformed(1, 'state', f.state)
  end
  local st = {
    state = f.state,
    generation = integer(f, 'generation', 1),
    last_lease = integer(f, 'last_lease', 0),
    failures = integer(f, 'failures', 0),
    open_count = integer(f, 'open_count', 0),
    trial_successes = integer(f, 'trial_successes', 0),
    open_until = finite(f, 'open_until', false),
  }
  if f.window_size ~= nil and f.window_seconds ~= nil then
    malformed(1, 'window_seconds', f.window_seconds)
  elseif f.window_size ~= nil then
    load_count_window(f, st)
  elseif f.window_seconds ~= nil then
    load_time_window(f, st)
  end
  return st
end

-- A new state: CLOSED, under a generation no earlier state of this name used.
local function fresh()
  redis.call('DEL', HASH, TRIALS, RING)
  dirty = true
  return {
    state = 'closed', generation = now, last_lease = now, failures = 0, open_count = 0,
    trial_successes = 0, open_until = 0,
  }
end

-- As the model, the first operation that brings window parameters creates the window;
-- its kind and size then stay with the state until the state is replaced.
local function ensure_window()
  if s.window ~= nil then
    return
  end
  if window_size ~= nil then
    s.window, s.window_size, s.window_next = 'count', window_size, 0
    s.window_calls, s.window_failures, s.window_slow = 0, 0, 0
    dirty = true
  elseif window_seconds ~= nil then
    s.window, s.window_seconds = 'time', window_seconds
    s.bucket_calls, s.bucket_failures, s.bucket_slow = zeros(), zeros(), zeros()
    s.window_calls, s.window_failures, s.window_slow = 0, 0, 0
    dirty = true
  end
end

local function save()
  if dirty then
    local fields = {
      'state', s.state, 'generation', num(s.generation), 'last_lease', num(s.last_lease),
      'failures', num(s.failures), 'open_count', num(s.open_count),
      'trial_successes', num(s.trial_successes), 'open_until', num(s.open_until),
    }
    local n = #fields
    if s.window == 'count' then
      fields[n + 1], fields[n + 2] = 'window_size', num(s.window_size)
      fields[n + 3], fields[n + 4] = 'window_next', num(s.window_next)
      fields[n + 5], fields[n + 6] = 'window_calls', num(s.window_calls)
      fields[n + 7], fields[n + 8] = 'window_failures', num(s.window_failures)
      fields[n + 9], fields[n + 10] = 'window_slow', num(s.window_slow)
    elseif s.window == 'time' then
      fields[n + 1], fields[n + 2] = 'window_seconds', num(s.window_seconds)
      fields[n + 3] = 'window_head'
      fields[n + 4] = s.window_head and num(s.window_head) or ''
      fields[n + 5], fields[n + 6] = 'bucket_calls', table.concat(s.bucket_calls, ',')
      fields[n + 7], fields[n + 8] = 'bucket_failures', table.concat(s.bucket_failures, ',')
      fields[n + 9], fields[n + 10] = 'bucket_slow', table.concat(s.bucket_slow, ',')
    end
    redis.call('HSET', HASH, unpack(fields))
  end
  -- Every operation refreshes the TTL of every key the breaker has, as the model
  -- refreshes an entry on every access; the leases exist only while half-open.
  redis.call('PEXPIRE', HASH, ttl_ms)
  if s.state == 'half_open' then
    redis.call('PEXPIRE', TRIALS, ttl_ms)
  end
  if s.window == 'count' then
    redis.call('PEXPIRE', RING, ttl_ms)
  end
end

-- `at`: when the change took effect (the lazy open_timeout move), else now.
local function transition(state, reason, at)
  local n = #moves
  moves[n + 1] = STATE_CODES[s.state]
  moves[n + 2] = STATE_CODES[state]
  moves[n + 3] = reason
  moves[n + 4] = at and math.max(0, now - at) or 0
  s.state = state
  s.generation = s.generation + 1
  s.trial_successes = 0
  -- Trial leases belong to one half-open period; their late outcomes are stale.
  redis.call('DEL', TRIALS)
  dirty = true
end

local function clear()
  if s.window == 'count' then
    s.window_next, s.window_calls, s.window_failures, s.window_slow = 0, 0, 0, 0
    -- Offsets below window_calls are rewritten before they are read again.
    redis.call('DEL', RING)
  elseif s.window == 'time' then
    s.window_head = nil
    s.bucket_calls, s.bucket_failures, s.bucket_slow = zeros(), zeros(), zeros()
    s.window_calls, s.window_failures, s.window_slow = 0, 0, 0
  end
  s.failures = 0
  s.open_count = 0
  dirty = true
end

local function open(reason, open_us)
  s.open_count = s.open_count + 1
  s.open_until = now + open_us
  transition('open', reason)
end

local function close(reason)
  clear()
  transition('closed', reason)
end

-- The lazy OPEN -> HALF_OPEN move, stamped with the end of the open period.
local function refresh()
  if s.state == 'open' and now >= s.open_until then
    transition('half_open', 'open_timeout', s.open_until)
  end
end

-- Move the time window's head to the bucket of now, dropping the buckets left behind.
-- The head keeps its phase (head + gap * width), so a bucket is always `width` long.
local function advance_buckets()
  local width = s.window_seconds * 1000000 / BUCKETS
  local head = s.window_head
  if head == nil then
    s.window_head = math.floor(now / width) * width
    return
  end
  local gap = math.floor((now - head) / width)
  if gap <= 0 then
    return -- the same bucket, or a server clock that stepped back: count in the newest
  end
  if gap >= BUCKETS then
    s.bucket_calls, s.bucket_failures, s.bucket_slow = zeros(), zeros(), zeros()
    s.window_calls, s.window_failures, s.window_slow = 0, 0, 0
  else
    for _ = 1, gap do
      s.window_calls = s.window_calls - table.remove(s.bucket_calls)
      s.window_failures = s.window_failures - table.remove(s.bucket_failures)
      s.window_slow = s.window_slow - table.remove(s.bucket_slow)
      table.insert(s.bucket_calls, 1, 0)
      table.insert(s.bucket_failures, 1, 0)
      table.insert(s.bucket_slow, 1, 0)
    end
  end
  s.window_head = head + gap * width
end

-- Add one outcome (FAILURE=1 | SLOW=2 flags) to the window.
local function record(flags)
  local failed, slow = flags % 2, math.floor(flags / 2)
  if s.window == 'count' then
    local index = s.window_next
    if s.window_calls == s.window_size then
      local byte = call(3, 'GETRANGE', RING, index, index)
      local evicted = RING_FLAGS[byte]
      if evicted == nil then
        malformed(3, 'offset ' .. index, byte)
      end
      s.window_failures = s.window_failures - evicted % 2
      s.window_slow = s.window_slow - math.floor(evicted / 2)
    else
      s.window_calls = s.window_calls + 1
    end
    call(3, 'SETRANGE', RING, index, tostring(flags))
    index = index + 1
    if index == s.window_size then
      index = 0
    end
    s.window_next = index
  else
    advance_buckets()
    s.bucket_calls[1] = s.bucket_calls[1] + 1
    s.bucket_failures[1] = s.bucket_failures[1] + failed
    s.bucket_slow[1] = s.bucket_slow[1] + slow
    s.window_calls = s.window_calls + 1
  end
  s.window_failures = s.window_failures + failed
  s.window_slow = s.window_slow + slow
  dirty = true
end

-- The outcome of a call admitted while CLOSED (its generation checked by the caller).
-- Outcome codes 0..3 are the FAILURE | SLOW flags themselves; 4 and 5 count nothing.
local function closed_outcome(outcome, open_us)
  if outcome > 3 then
    return
  end
  local failed = outcome % 2 == 1
  if failed then
    s.failures = s.failures + 1
    dirty = true
  elseif s.failures ~= 0 then
    s.failures = 0
    dirty = true
  end
  if s.window ~= nil then
    record(outcome)
  end
  if failed and s.failures >= failure_threshold then
    open('failure_threshold', open_us)
  elseif s.window ~= nil and s.window_calls >= minimum_calls then
    if failure_rate_threshold and
        s.window_failures / s.window_calls >= failure_rate_threshold then
      open('failure_rate', open_us)
    elseif slow_call_rate_threshold and
        s.window_slow / s.window_calls >= slow_call_rate_threshold then
      open('slow_call_rate', open_us)
    end
  end
end

-- The outcome of a trial whose lease was still valid.
local function trial_outcome(outcome, open_us)
  if outcome == 0 then
    s.trial_successes = s.trial_successes + 1
    dirty = true
    if s.trial_successes >= success_threshold then
      close('trial_success')
    end
  elseif outcome <= 3 then
    open('trial_failure', open_us) -- a failure, or a slow trial: not recovered yet
  end
end
"""
)
"""What every script starts with: the state layout, loading, validation and the rules."""

_EPILOGUE: Final = (
    r"""
local function run(state)
  s = state or load() or fresh()
  ensure_window()
  local reply = {0, '', ''}
  operation(reply)
  save()
  local n = #reply
  reply[n + 1] = STATE_CODES[s.state]
  reply[n + 2] = s.generation
  reply[n + 3] = s.state == 'open' and math.max(0, s.open_until - now) or 0
  reply[n + 4] = s.failures
  reply[n + 5] = s.open_count
  reply[n + 6] = s.state == 'half_open' and call(2, 'ZCARD', TRIALS) or 0
  return reply
end

-- Printable ASCII only, and short: the value goes into a log line.
local function printable(value)
  if value == nil then
    return '(missing)'
  end
  local cut = #value > """
    + str(MAX_PROBLEM_VALUE_CHARS)
    + r"""
  if cut then
    value = string.sub(value, 1, """
    + str(MAX_PROBLEM_VALUE_CHARS)
    + r""")
  end
  value = string.gsub(value, '[^%w%p ]', function(c)
    return string.format('\\x%02x', string.byte(c))
  end)
  if cut then
    value = value .. '...'
  end
  return value
end

local ok, reply = pcall(run)
if not ok then
  if type(reply) ~= 'table' or not reply.malformed then
    error(reply, 0)
  end
  local problem = reply
  moves = {}
  reply = run(fresh())
  reply[1], reply[2], reply[3] = problem.where, printable(problem.field), printable(problem.value)
end
for i = 1, #moves do
  reply[#reply + 1] = moves[i]
end
return reply
"""
)

ACQUIRE_SCRIPT: Final = (
    PRELUDE
    + r"""
-- acquire: the lazy OPEN -> HALF_OPEN move, then a permit.
-- Head: kind (0 admitted, 1 trial, 2 rejected, 3 disabled), token, retry after (us, -1: none)
local function operation(reply)
  refresh()
  local state = s.state
  if state == 'closed' then
    reply[4], reply[5], reply[6] = 0, s.generation, -1
  elseif state == 'disabled' then
    reply[4], reply[5], reply[6] = 3, 0, -1
  elseif state == 'open' then
    reply[4], reply[5], reply[6] = 2, 0, s.open_until - now
  elseif state == 'half_open' then
    -- Reclaim the leases of trials that never reported (a process may have died).
    call(2, 'ZREMRANGEBYSCORE', TRIALS, '-inf', num(now))
    if call(2, 'ZCARD', TRIALS) < half_open_max_calls then
      s.last_lease = s.last_lease + 1
      dirty = true
      call(2, 'ZADD', TRIALS, num(now + lease_us), num(s.last_lease))
      reply[4], reply[5], reply[6] = 1, s.last_lease, -1
    else
      reply[4], reply[5], reply[6] = 2, 0, 0 -- every slot leased: one may free up any time
    end
  else
    reply[4], reply[5], reply[6] = 2, 0, -1 -- forced_open: no automatic recovery
  end
end
"""
    + _EPILOGUE
)
"""acquire: ARGV[11..] nothing. Head: kind, token, retry_after in microseconds (-1: None)."""

REPORT_SCRIPT: Final = (
    PRELUDE
    + r"""
-- report: the outcome of the call admitted with ARGV[11] (a generation, or a lease id
-- when ARGV[14] is '1'); ARGV[12] the Outcome code; ARGV[13] the open duration (seconds).
-- Head: counted (1 or 0).
local token, outcome = ARGV[11], tonumber(ARGV[12])
local open_us = tonumber(ARGV[13]) * 1000000
local trial = ARGV[14] == '1'

local function operation(reply)
  local counted = 0
  if trial then
    if s.state == 'half_open' then
      local expiry = call(2, 'ZSCORE', TRIALS, token)
      if expiry then
        call(2, 'ZREM', TRIALS, token)
        -- A lease past its expiry is stale even before acquire reclaims it.
        if tonumber(expiry) > now then
          counted = 1
          trial_outcome(outcome, open_us)
        end
      end
    end
  elseif s.state == 'closed' and token == num(s.generation) then
    counted = 1
    closed_outcome(outcome, open_us)
  end
  reply[4] = counted
end
"""
    + _EPILOGUE
)
"""report: ARGV[11..14] token, outcome code, open seconds, trial flag. Head: counted."""

COMMAND_SCRIPT: Final = (
    PRELUDE
    + r"""
-- command: ARGV[11] the Command code (0 reset, 1 force open, 2 disable, 3 trip),
-- ARGV[12] the trip's reason, ARGV[13] the open duration (seconds). No head.
local command, reason = tonumber(ARGV[11]), ARGV[12]
local open_us = tonumber(ARGV[13]) * 1000000

local function operation(reply)
  if command == 0 then
    if s.state == 'closed' then
      -- Already closed: empty counts and a new generation, so that calls admitted
      -- before the reset count for nothing; no transition.
      clear()
      s.generation = s.generation + 1
    else
      close('manual')
    end
  elseif command == 3 then
    refresh()
    if s.state == 'closed' or s.state == 'half_open' then
      open(reason, open_us)
    end
  else
    local target = command == 1 and 'forced_open' or 'disabled'
    if s.state ~= target then
      transition(target, 'manual')
    end
  end
end
"""
    + _EPILOGUE
)
"""command: ARGV[11..13] command code, reason, open seconds. No head."""

READ_SCRIPT: Final = (
    PRELUDE
    + r"""
-- read: the state as it is (no lazy move); initialises a missing state. No head.
local function operation(reply)
end
"""
    + _EPILOGUE
)
"""read: no arguments, no head."""


# -- keys and arguments ----------------------------------------------------------------


def breaker_keys(namespace: str, name: str) -> tuple[str, str, str]:
    """The hash, trials and ring keys of breaker ``name``; ``ValueError`` for a bad name.

    The name is the cluster hash tag, so it may not be empty nor hold ``{`` or ``}``.
    """
    if not isinstance(name, str):
        raise TypeError(f"breaker name must be a str, got {type(name).__name__} {name!r}")
    if not name or "{" in name or "}" in name:
        raise ValueError(
            f"Redis state store: breaker name must be non-empty and free of '{{' and '}}' "
            f"(it is the key's cluster hash tag), got name={name!r}"
        )
    key = f"{namespace}:{{{name}}}"
    return key, f"{key}:trials", f"{key}:ring"


def _optional(value: float | None) -> str:
    return "" if value is None else repr(value)


def params_args(params: StoreParams) -> tuple[str, ...]:
    """``ARGV[1..10]`` of every script: the parameters as strings, seconds as given."""
    ttl_ms = max(1, round(params.key_ttl_seconds * 1000))
    return (
        str(params.failure_threshold),
        str(params.success_threshold),
        str(params.half_open_max_calls),
        repr(float(params.lease_seconds)),
        str(params.minimum_calls),
        _optional(params.failure_rate_threshold),
        _optional(params.slow_call_rate_threshold),
        "" if params.window_size is None else str(params.window_size),
        _optional(params.window_seconds),
        str(ttl_ms),
    )


# -- replies -----------------------------------------------------------------------------


def _text(value: bytes | str) -> str:
    # Replies are bytes, or str from a client made with decode_responses=True.
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _transitions(reply: list[Any], start: int) -> tuple[Transition, ...]:
    if len(reply) == start:
        return ()
    return tuple(
        Transition(
            STATES[reply[index]],
            STATES[reply[index + 1]],
            _text(reply[index + 2]),
            reply[index + 3] / 1e6,
        )
        for index in range(start, len(reply), 4)
    )


def _view(reply: list[Any], at: int) -> StoreView:
    return StoreView(
        STATES[reply[at]],
        reply[at + 1],
        reply[at + 2] / 1e6,
        reply[at + 3],
        reply[at + 4],
        reply[at + 5],
    )


def decode_admission(reply: list[Any]) -> Admission:
    """The :class:`Admission` of an :data:`ACQUIRE_SCRIPT` reply."""
    retry_us = reply[5]
    return Admission(
        _KINDS[reply[3]],
        reply[4],
        None if retry_us < 0 else retry_us / 1e6,
        _view(reply, _ADMISSION_VIEW),
        _transitions(reply, _ADMISSION_VIEW + _VIEW_SLOTS),
    )


def decode_report(reply: list[Any]) -> Report:
    """The :class:`Report` of a :data:`REPORT_SCRIPT` reply."""
    return Report(
        reply[3] == 1,
        _view(reply, _REPORT_VIEW),
        _transitions(reply, _REPORT_VIEW + _VIEW_SLOTS),
    )


def decode_command(reply: list[Any]) -> Report:
    """The :class:`Report` of a :data:`COMMAND_SCRIPT` reply (commands always count)."""
    return Report(True, _view(reply, _PLAIN_VIEW), _transitions(reply, _PLAIN_VIEW + _VIEW_SLOTS))


def decode_view(reply: list[Any]) -> StoreView:
    """The :class:`StoreView` of a :data:`READ_SCRIPT` reply."""
    return _view(reply, _PLAIN_VIEW)


def problem_message(keys: tuple[str, str, str], reply: list[Any]) -> str | None:
    """What a reply says the script found malformed (and reset), or ``None``."""
    where = reply[0]
    if not where:
        return None
    key = keys[where - 1]
    field = _text(reply[1])
    value = _text(reply[2])
    what = f"a {value} key" if field == "(type)" else f"field {field!r} = {value!r}"
    return (
        f"malformed breaker state in Redis: {_KEY_ROLES[where]} key {key!r} held {what}; "
        "its keys were reset to a fresh CLOSED state under a new generation"
    )
