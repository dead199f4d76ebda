-- Applies a batch of window ops atomically and in order; the semantics are those of
-- auditflow/backends/state/base.py, mirrored by memory.py.
--
-- ARGV: key_prefix, grace_ms, max_samples, then one value per op:
--   "kind ts_ms window_ms suppress_ms count step_counts matched_steps len(key) len(event_id)
--    len(new_alert_id)\n" .. key .. event_id .. new_alert_id .. payload
-- (key encodes the rule and group; the comma-separated step lists may be empty). Every op value is
-- data: nothing from ARGV is ever evaluated as code.
--
-- Keys, for one (rule, group):
--   {prefix}w:{key}    sorted set event_id -> ts: every recent event (de-duplication, threshold window)
--   {prefix}p:{key}    hash event_id -> payload (threshold and sequence only)
--   {prefix}s{n}:{key} sorted set event_id -> ts of the events matching sequence step n
--   {prefix}a:{key}    hash id, occ, first, last: the live alert, for suppression; evn, ev: the
--                      number and ids of its first max_samples events (none for match rules,
--                      whose keys hold no payloads) as concatenated MessagePack strings, so that
--                      a repeat appends without decoding: the samples of a replay
-- Each key expires its window or suppression period plus grace_ms after its last write. A sequence
-- op of a later step writes nothing while {prefix}s0:{key} has no entry in [ts - window, ts).
-- The keys are derived here from the prefix and the op, not passed as KEYS: one call touches
-- the keys of many groups, so the script needs a single Redis server (or one shard), not a Cluster.
--
-- Returns a flat array; per hit a header "op_index status occurrences first_ms last_ms n" followed,
-- unless the alert is new (status 1), by " " .. alert_id, then n pairs event_id, payload. Status 1:
-- a new alert, its samples; 0: a suppressed repeat, n = 0 (its only event is the op's own);
-- 2: a replay of a redelivered event, the samples still held (n = 0 for a match rule: the op's own;
-- n = -1: the same samples as the previous replay hit of this alert, which the key still holds).

local prefix = ARGV[1]
local grace = tonumber(ARGV[2])
local max_samples = tonumber(ARGV[3])
local HEADER = '^(%a+) (%-?%d+) (%d+) (%d+) (%d+) ([%d,]*) ([%d,]*) (%d+) (%d+) (%d+)$'

local out = {}
local ttls = {} -- key -> PEXPIRE to set once at the end
local newest_of = {} -- window key -> its newest score, once read in this call
local floor_of = {} -- window key -> no entry is older, except ones added since older than that
local alerts = {} -- key -> cached alert table, or false when there is none
local dirty = {} -- key -> TTL of an alert to write back at the end
local replayed = {} -- key -> the alert whose samples the last replay sent, while the key is unchanged
local any_replayed = false

local function keep(key, ttl)
  local old = ttls[key]
  if old == nil or old < ttl then
    ttls[key] = ttl
  end
end

local function numbers(csv)
  local list = {}
  for n in string.gmatch(csv, '%d+') do
    list[#list + 1] = tonumber(n)
  end
  return list
end

-- unpack() is bounded by the Lua stack: delete in slices.
local function hdel(key, fields)
  for i = 1, #fields, 500 do
    redis.call('HDEL', key, unpack(fields, i, math.min(i + 499, #fields)))
  end
end

-- Appends a replay hit: its header (the number of samples between head and tail), then the pairs
-- event_id, payload of those of the first n ids whose payload the key still holds, each once (an
-- event forgotten and then recorded again is attributed twice).
local function emit_replay(head, tail, pkey, ids, n)
  local payloads = redis.call('HMGET', pkey, unpack(ids, 1, n))
  local held, seen = {}, {}
  for i = 1, n do
    if payloads[i] and not seen[ids[i]] then
      seen[ids[i]] = true
      held[#held + 1] = ids[i]
      held[#held + 1] = payloads[i]
    end
  end
  out[#out + 1] = head .. (#held / 2) .. tail
  for i = 1, #held do
    out[#out + 1] = held[i]
  end
end

local function alert_of(base)
  local alert = alerts[base]
  if alert == nil then
    local r = redis.call('HMGET', prefix .. 'a:' .. base, 'id', 'occ', 'first', 'last', 'evn', 'ev')
    alert = false
    if r[1] then
      alert = {id = r[1], occ = tonumber(r[2]), first = tonumber(r[3]), last = tonumber(r[4]),
        evn = tonumber(r[5]) or 0, ev = r[6] or ''}
    end
    alerts[base] = alert
  end
  return alert
end

for index = 0, #ARGV - 4 do
  local arg = ARGV[index + 4]
  local nl = string.find(arg, '\n', 1, true)
  local kind, ts_arg, window, suppress, count, steps_csv, matched_csv, lb, le, la =
    string.match(string.sub(arg, 1, nl - 1), HEADER)
  local ts = tonumber(ts_arg)
  window, suppress = tonumber(window), tonumber(suppress)
  lb, le, la = tonumber(lb), tonumber(le), tonumber(la)
  local base = string.sub(arg, nl + 1, nl + lb)
  local eid = string.sub(arg, nl + lb + 1, nl + lb + le)
  local new_id = string.sub(arg, nl + lb + le + 1, nl + lb + le + la)
  local wkey = prefix .. 'w:' .. base
  local pkey = prefix .. 'p:' .. base
  local lo = ts - window

  local added, duplicate
  -- Step lists are written without leading zeros: step 0 is matched iff the list starts with 0 or
  -- holds ",0".
  if kind == 'sequence' and string.byte(matched_csv, 1) ~= 48 and not string.find(matched_csv, ',0', 1, true) then
    -- No step-0 event precedes it in the window: not recorded (base.py, 4). Only an event
    -- recorded earlier, while there was one, is a redelivery to replay for. Every step-0 entry is
    -- in the window key too, whose expiry every recording op renews, so a group without a window
    -- key (the usual case: a success of a user without failures) costs one lookup.
    if redis.call('EXISTS', wkey) == 0 then
      added, duplicate = false, false
    elseif redis.call('ZCOUNT', prefix .. 's0:' .. base, lo, '(' .. ts_arg) == 0 then
      added, duplicate = false, redis.call('ZSCORE', wkey, eid) ~= false
    end
  end
  if added == nil then
    -- NX: an event already recorded for this key is a redelivery; it changes nothing (below).
    added = redis.call('ZADD', wkey, 'NX', ts_arg, eid) == 1
    duplicate = not added
  end
  if added then
    local wttl = window + grace
    if any_replayed then
      replayed[base] = nil
    end
    local steps, matched = {}, {}
    keep(wkey, wttl)
    if kind ~= 'match' then
      redis.call('HSET', pkey, eid, string.sub(arg, nl + lb + le + la + 1))
      keep(pkey, wttl)
    end
    if kind == 'sequence' then
      steps, matched = numbers(steps_csv), numbers(matched_csv)
      for _, step in ipairs(matched) do
        local skey = prefix .. 's' .. step .. ':' .. base
        redis.call('ZADD', skey, ts_arg, eid)
        keep(skey, wttl)
      end
    end

    -- Slide the window: drop what is older than the newest event minus window_ms.
    local newest = newest_of[wkey]
    if newest == nil then
      newest = tonumber(redis.call('ZRANGE', wkey, -1, -1, 'WITHSCORES')[2])
    elseif ts > newest then
      newest = ts
    end
    newest_of[wkey] = newest
    local cutoff = newest - window
    local floor = floor_of[wkey]
    if floor == nil or cutoff > floor or ts < cutoff then
      local below = string.format('(%d', cutoff)
      if kind == 'match' then
        redis.call('ZREMRANGEBYSCORE', wkey, '-inf', below)
      else
        local stale = redis.call('ZRANGEBYSCORE', wkey, '-inf', below)
        if #stale > 0 then
          redis.call('ZREMRANGEBYSCORE', wkey, '-inf', below)
          hdel(pkey, stale)
          for step = 0, #steps - 1 do
            redis.call('ZREMRANGEBYSCORE', prefix .. 's' .. step .. ':' .. base, '-inf', below)
          end
        end
      end
      floor_of[wkey] = cutoff
    end

    local fired, occurrences, first, last = false, 1, ts, ts
    local ids = {}
    if kind == 'match' then
      fired = true
    elseif kind == 'threshold' then
      -- Everything kept lies within window of the newest entry, so the fullest window around ts
      -- is the one from ts - window: it holds every entry from there on (see base.py). An event
      -- older than the cutoff was dropped on arrival.
      if ts >= cutoff then
        occurrences = redis.call('ZCOUNT', wkey, lo, '+inf')
        if occurrences >= tonumber(count) then
          local r = redis.call('ZRANGEBYSCORE', wkey, lo, '+inf', 'WITHSCORES', 'LIMIT', 0, max_samples)
          for i = 1, #r, 2 do
            ids[#ids + 1] = r[i]
          end
          fired, first, last = true, tonumber(r[2]), newest
        end
      end
    elseif #steps > 0 and string.find(',' .. matched_csv .. ',', ',' .. (#steps - 1) .. ',', 1, true) then
      -- Greedy earliest chain: each step's first `count` events strictly after the previous step.
      local min = lo
      fired = true
      for step = 0, #steps - 1 do
        local skey = prefix .. 's' .. step .. ':' .. base
        local r
        if step < #steps - 1 then
          r = redis.call('ZRANGEBYSCORE', skey, min, ts, 'WITHSCORES', 'LIMIT', 0, steps[step + 1])
        else
          r = redis.call('ZRANGEBYSCORE', skey, min, ts, 'WITHSCORES')
        end
        if #r / 2 < steps[step + 1] then
          fired = false
          break
        end
        if step == 0 then
          first = tonumber(r[2])
        end
        for i = 1, #r, 2 do
          ids[#ids + 1] = r[i]
        end
        min = '(' .. r[#r]
      end
      occurrences = #ids
    end

    if fired then
      local alert = false
      if suppress > 0 then
        alert = alert_of(base)
        if alert and ts - alert.last >= suppress then
          alert = false
        end
      end
      if alert then
        alert.occ = alert.occ + 1
        alert.last = math.max(alert.last, ts)
        if kind ~= 'match' and alert.evn < max_samples then
          alert.ev = alert.ev .. cmsgpack.pack(eid)
          alert.evn = alert.evn + 1
          alert.evdirty = true
        end
        dirty[base] = math.max(dirty[base] or 0, suppress + grace)
        out[#out + 1] = string.format('%d 0 %d %d %d 0 ', index, alert.occ, alert.first, alert.last) .. alert.id
      else
        local n = math.min(#ids, max_samples)
        if suppress > 0 then
          local ev, evn = '', 0
          if kind ~= 'match' and n > 0 then
            ev, evn = cmsgpack.pack(unpack(ids, 1, n)), n
          end
          alerts[base] = {id = new_id, occ = occurrences, first = first, last = last, ev = ev, evn = evn,
            evdirty = true}
          dirty[base] = math.max(dirty[base] or 0, suppress + grace)
        end
        out[#out + 1] = string.format('%d 1 %d %d %d %d', index, occurrences, first, last, n)
        if n > 0 then
          local payloads = redis.call('HMGET', pkey, unpack(ids, 1, n))
          for i = 1, n do
            out[#out + 1] = ids[i]
            out[#out + 1] = payloads[i] or ''
          end
        end
      end
    end
  elseif duplicate and suppress > 0 then
    -- A redelivery names the key's live alert again, unchanged: the batch that first recorded the
    -- event may have died before its alerts were published.
    local alert = alert_of(base)
    if alert and ts - alert.last < suppress then
      local head = string.format('%d 2 %d %d %d ', index, alert.occ, alert.first, alert.last)
      if kind == 'match' or alert.evn == 0 then
        out[#out + 1] = head .. '0 ' .. alert.id
      elseif replayed[base] == alert then
        out[#out + 1] = head .. '-1 ' .. alert.id -- the same samples again: the reply stays small
      else
        emit_replay(head, ' ' .. alert.id, pkey, {cmsgpack.unpack(alert.ev)}, alert.evn)
        replayed[base] = alert
        any_replayed = true
      end
    end
  end
end

for base, ttl in pairs(dirty) do
  local alert = alerts[base]
  local akey = prefix .. 'a:' .. base
  local first, last = string.format('%d', alert.first), string.format('%d', alert.last)
  if alert.evdirty then
    redis.call('HSET', akey, 'id', alert.id, 'occ', alert.occ, 'first', first, 'last', last, 'evn', alert.evn,
      'ev', alert.ev)
  else
    redis.call('HSET', akey, 'id', alert.id, 'occ', alert.occ, 'first', first, 'last', last)
  end
  keep(akey, ttl)
end
for key, ttl in pairs(ttls) do
  redis.call('PEXPIRE', key, ttl)
end
return out
