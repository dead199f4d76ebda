-- Applies a batch of window ops atomically and in order; the semantics are those of
-- auditflow/backends/state/base.py, mirrored by memory.py.
--
-- ARGV: key_prefix, grace_ms, max_samples, then 11 values per op:
--   key (rule and group, encoded), kind, event_id, ts_ms, payload, window_ms, suppress_ms,
--   new_alert_id, count, step_counts (comma-separated), matched_steps (comma-separated).
-- Every op value is data: nothing from ARGV is ever evaluated as code.
--
-- Keys, for one (rule, group):
--   {prefix}w:{key}   sorted set event_id -> ts: every recent event (de-duplication, threshold window)
--   {prefix}p:{key}   hash event_id -> payload (threshold and sequence only)
--   {prefix}s{n}:{key} sorted set event_id -> ts of the events matching sequence step n
--   {prefix}a:{key}   hash id, occ, first, last: the live alert, for suppression
-- Each key expires its window or suppression period plus grace_ms after its last write.
--
-- Returns one entry per hit: {op_index, alert_id, new (1|0), occurrences, first_ms, last_ms,
-- {event_id, payload, ...}}.

local prefix = ARGV[1]
local grace = tonumber(ARGV[2])
local max_samples = tonumber(ARGV[3])
local FIELDS = 11
local hits = {}
local ttls = {}

local function keep(key, ttl)
  local old = ttls[key]
  if old == nil or old < ttl then
    ttls[key] = ttl
  end
end

local function numbers(csv)
  local out = {}
  for n in string.gmatch(csv, '%d+') do
    out[#out + 1] = tonumber(n)
  end
  return out
end

local function contains(list, value)
  for _, v in ipairs(list) do
    if v == value then
      return true
    end
  end
  return false
end

-- unpack() is bounded by the Lua stack: delete in slices.
local function hdel(key, fields)
  for i = 1, #fields, 500 do
    redis.call('HDEL', key, unpack(fields, i, math.min(i + 499, #fields)))
  end
end

-- {id, payload, ...} for the first max_samples ids.
local function samples(pkey, ids)
  local out = {}
  local n = math.min(#ids, max_samples)
  if n == 0 then
    return out
  end
  local payloads = redis.call('HMGET', pkey, unpack(ids, 1, n))
  for i = 1, n do
    out[#out + 1] = ids[i]
    out[#out + 1] = payloads[i] or ''
  end
  return out
end

local nops = (#ARGV - 3) / FIELDS
for index = 0, nops - 1 do
  local b = 3 + index * FIELDS
  local base = ARGV[b + 1]
  local kind = ARGV[b + 2]
  local eid = ARGV[b + 3]
  local ts_arg = ARGV[b + 4]
  local ts = tonumber(ts_arg)
  local payload = ARGV[b + 5]
  local window = tonumber(ARGV[b + 6])
  local suppress = tonumber(ARGV[b + 7])
  local wkey = prefix .. 'w:' .. base
  local pkey = prefix .. 'p:' .. base

  if not redis.call('ZSCORE', wkey, eid) then
    local wttl = window + grace
    local steps = {}
    local matched = {}
    redis.call('ZADD', wkey, ts_arg, eid)
    keep(wkey, wttl)
    if kind ~= 'match' then
      redis.call('HSET', pkey, eid, payload)
      keep(pkey, wttl)
    end
    if kind == 'sequence' then
      steps = numbers(ARGV[b + 10])
      matched = numbers(ARGV[b + 11])
      for _, step in ipairs(matched) do
        local skey = prefix .. 's' .. step .. ':' .. base
        redis.call('ZADD', skey, ts_arg, eid)
        keep(skey, wttl)
      end
    end

    -- Slide the window: drop what is older than the newest event minus window_ms.
    local newest = tonumber(redis.call('ZRANGE', wkey, -1, -1, 'WITHSCORES')[2])
    local below = string.format('(%d', newest - window)
    local stale = redis.call('ZRANGEBYSCORE', wkey, '-inf', below)
    if #stale > 0 then
      redis.call('ZREMRANGEBYSCORE', wkey, '-inf', below)
      if kind ~= 'match' then
        hdel(pkey, stale)
      end
      for step = 0, #steps - 1 do
        redis.call('ZREMRANGEBYSCORE', prefix .. 's' .. step .. ':' .. base, '-inf', below)
      end
    end

    local lo = ts - window
    local fired = false
    local occurrences, first, events
    if kind == 'match' then
      fired, occurrences, first, events = true, 1, ts, {eid, payload}
    elseif kind == 'threshold' then
      occurrences = redis.call('ZCOUNT', wkey, lo, ts)
      if occurrences >= tonumber(ARGV[b + 9]) then
        local r = redis.call('ZRANGEBYSCORE', wkey, lo, ts, 'WITHSCORES', 'LIMIT', 0, max_samples)
        local ids = {}
        for i = 1, #r, 2 do
          ids[#ids + 1] = r[i]
        end
        fired, first, events = true, tonumber(r[2]), samples(pkey, ids)
      end
    elseif #steps > 0 and contains(matched, #steps - 1) then
      -- Greedy earliest chain: each step's first `count` events strictly after the previous step.
      local min = lo
      local ids = {}
      local complete = true
      for step = 0, #steps - 1 do
        local skey = prefix .. 's' .. step .. ':' .. base
        local r
        if step < #steps - 1 then
          r = redis.call('ZRANGEBYSCORE', skey, min, ts, 'WITHSCORES', 'LIMIT', 0, steps[step + 1])
        else
          r = redis.call('ZRANGEBYSCORE', skey, min, ts, 'WITHSCORES')
        end
        if #r / 2 < steps[step + 1] then
          complete = false
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
      if complete then
        fired, occurrences, events = true, #ids, samples(pkey, ids)
      end
    end

    if fired then
      local akey = prefix .. 'a:' .. base
      local alert = false
      if suppress > 0 then
        alert = redis.call('HMGET', akey, 'id', 'occ', 'first', 'last')
        if not alert[1] or ts - tonumber(alert[4]) >= suppress then
          alert = false
        end
      end
      if alert then
        local last = math.max(tonumber(alert[4]), ts)
        local occ = redis.call('HINCRBY', akey, 'occ', 1)
        redis.call('HSET', akey, 'last', string.format('%d', last))
        keep(akey, suppress + grace)
        hits[#hits + 1] = {index, alert[1], 0, occ, tonumber(alert[3]), last, {eid, payload}}
      else
        local new_id = ARGV[b + 8]
        if suppress > 0 then
          redis.call('HSET', akey, 'id', new_id, 'occ', occurrences, 'first', string.format('%d', first),
            'last', ts_arg)
          keep(akey, suppress + grace)
        end
        hits[#hits + 1] = {index, new_id, 1, occurrences, first, ts, events}
      end
    end
  end
end

for key, ttl in pairs(ttls) do
  redis.call('PEXPIRE', key, ttl)
end
return hits
