-- Applies a batch of window ops atomically and in order; the semantics are those of
-- auditflow/backends/state/base.py, mirrored by memory.py.
--
-- KEYS[1]: the arrival counter (below).
-- ARGV: key_prefix, grace_ms, max_samples, max_entries, then one value per op:
--   "kind ts_ms window_ms suppress_ms count step_counts matched_steps len(key) len(event_id)
--    len(new_alert_id) len(distinct)\n" .. key .. event_id .. new_alert_id .. distinct .. payload
-- (an empty new_alert_id: the id derived from the rule, group and event, as derived_alert_id in
-- base.py does, computed only when the op opens an alert)
-- (key encodes the rule and group; the comma-separated step lists may be empty; kind "distinct" is
-- a distinct-count threshold, the others have an empty distinct value; kind "unordered" is a
-- sequence whose steps may happen in any order). Every op value is data:
-- nothing from ARGV is ever evaluated as code.
--
-- Keys, for one (rule, group):
--   {prefix}w:{key}    sorted set event_id -> ts: every recent event (de-duplication, threshold window)
--   {prefix}p:{key}    hash event_id -> payload (threshold and sequence only)
--   {prefix}d:{key}    hash event_id -> the value a distinct-count threshold counts
--   {prefix}s{n}:{key} sorted set member -> ts of the events matching sequence step n, the member
--                      being the event's arrival number (16 digits) .. event_id: members of equal
--                      score sort by arrival
--   KEYS[1]            the arrival counter: one INCRBY per call that records a sequence event
--                      numbers them all; it outlives every step key it numbered. {prefix}n on a
--                      single server; on a Cluster one per hash slot, in that slot, so that
--                      arrival numbers of one key always come from one counter
--   {prefix}a:{key}    hash id, occ, first, last: the live alert, for suppression; evn, ev: the
--                      number and ids of its first max_samples events (none for match rules,
--                      whose keys hold no payloads) as concatenated MessagePack strings, so that
--                      a repeat appends without decoding: the samples of a replay
-- Each key expires its window or suppression period plus grace_ms after its last write. An ordered
-- sequence op of a later step writes nothing while {prefix}s0:{key} has no entry in [ts - window, ts].
-- An unordered sequence uses the same keys: its steps' entries are read back from the s{n} keys.
-- The keys are derived here from the prefix and the op, not passed as KEYS: one call touches
-- the keys of many groups. On a Cluster every key of a group carries the group as its hash tag
-- (the op's key is then "{...}"), and a call holds only ops of one slot, whose counter is KEYS[1].
--
-- Returns a flat array; per hit a header "op_index status occurrences first_ms last_ms n" followed
-- by " " .. alert_id, then n pairs event_id, payload. Status 1:
-- a new alert, its samples; 0: a suppressed repeat, n = 0 (its only event is the op's own);
-- 2: a replay of a redelivered event, the samples still held (n = 0 for a match rule: the op's own;
-- n = -1: the same samples as the previous replay hit of this alert, which the key still holds).

local prefix = ARGV[1]
local grace = tonumber(ARGV[2])
local max_samples = tonumber(ARGV[3])
local max_entries = tonumber(ARGV[4])
local HEADER = '^(%a+) (%-?%d+) (%d+) (%d+) (%d+) ([%d,]*) ([%d,]*) (%d+) (%d+) (%d+) (%d+)$'

local out = {}
local ttls = {} -- key -> PEXPIRE to set once at the end
local newest_of = {} -- window key -> its newest score, once read in this call
local floor_of = {} -- window key -> no entry is older, except ones added since older than that
local alerts = {} -- key -> cached alert table, or false when there is none
local dirty = {} -- key -> TTL of an alert to write back at the end
local replayed = {} -- key -> the alert whose samples the last replay sent, while the key is unchanged
local any_replayed = false
local arrival = nil -- the arrival number before this call's first op, once a sequence needs it
local arrival_ttl = 0 -- the longest step-key TTL this call set

-- Scores as Redis reads them: a Lua number would be formatted with 14 significant digits.
local function int(n)
  return string.format('%d', n)
end

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

-- The 16 bytes of ALERT_NAMESPACE (base.py).
local NAMESPACE = '\93\12\47\110\74\142\79\43\154\87\15\28\62\123\154\33'

-- derived_alert_id (base.py): the name-based (version 5) UUID of rule_id, group_key and event_id,
-- the first two read back from the op's key, "len:rule_id:group_key" (window_key); on a Cluster that is the
-- hash tag "{...}" with "%" and "}" escaped as "%25" and "%7D".
local function derived_id(base, eid)
  if string.byte(base, 1) == 123 then
    base = string.gsub(string.sub(base, 2, -2), '%%(%x%x)', function(h)
      return string.char(tonumber(h, 16))
    end)
  end
  local colon = string.find(base, ':', 1, true)
  local after = colon + 1 -- the byte after the rule id, whose length counts characters (UTF-8)
  for _ = 1, tonumber(string.sub(base, 1, colon - 1)) do
    local b = string.byte(base, after)
    after = after + (b < 128 and 1 or b < 224 and 2 or b < 240 and 3 or 4)
  end
  local rule_id = string.sub(base, colon + 1, after - 1)
  local group_key = string.sub(base, after + 1)
  local h = string.sub(redis.sha1hex(NAMESPACE .. rule_id .. '\31' .. group_key .. '\31' .. eid), 1, 32)
  local variant = string.format('%x', tonumber(string.sub(h, 17, 17), 16) % 4 + 8)
  return string.sub(h, 1, 8) .. '-' .. string.sub(h, 9, 12) .. '-5' .. string.sub(h, 14, 16) .. '-' .. variant
    .. string.sub(h, 18, 20) .. '-' .. string.sub(h, 21, 32)
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


-- The fullest window of `window` around ts among the entries r (ZRANGEBYSCORE ... WITHSCORES),
-- the earliest of equally full ones; sizes count distinct values(i) when values is given.
-- Returns size, first index, last index (into the pairs of r, 1-based pair numbers).
local function fullest(r, values, ts, window)
  local n = #r / 2
  local best, best_i, best_j = 0, 1, 0
  local counts, distinct, j = {}, 0, 0
  for i = 1, n do
    local start = tonumber(r[2 * i])
    if start > ts then
      break
    end
    while j < n and tonumber(r[2 * j + 2]) <= start + window do
      j = j + 1
      if values then
        local v = values[j]
        counts[v] = (counts[v] or 0) + 1
        if counts[v] == 1 then
          distinct = distinct + 1
        end
      end
    end
    local size = values and distinct or (j - i + 1)
    if size > best then
      best, best_i, best_j = size, i, j
    end
    if values then
      local v = values[i]
      counts[v] = counts[v] - 1
      if counts[v] == 0 then
        distinct = distinct - 1
      end
    end
  end
  return best, best_i, best_j
end

-- The members of skey after (score, member) up to ts, in (score, arrival) order: at most need
-- of them unless need is nil; with member nil, from score on.
local function after(skey, score, member, ts, need)
  local got, scores = {}, {}
  local low = score
  if member ~= nil then
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', skey, score, score)) do
      if m > member and (need == nil or #got < need) then
        got[#got + 1], scores[#scores + 1] = m, score
      end
    end
    low = '(' .. score
  end
  if need == nil or #got < need then
    local r
    if need == nil then
      r = redis.call('ZRANGEBYSCORE', skey, low, ts, 'WITHSCORES')
    else
      r = redis.call('ZRANGEBYSCORE', skey, low, ts, 'WITHSCORES', 'LIMIT', 0, need - #got)
    end
    for i = 1, #r, 2 do
      got[#got + 1], scores[#scores + 1] = r[i], r[i + 1]
    end
  end
  return got, scores
end

-- The number of members of skey after (score, member) up to ts, in (score, arrival) order; with
-- member nil, from score on.
local function count_after(skey, score, member, ts)
  if member == nil then
    return redis.call('ZCOUNT', skey, score, ts)
  end
  local n = 0
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', skey, score, score)) do
    if m > member then
      n = n + 1
    end
  end
  return n + redis.call('ZCOUNT', skey, '(' .. score, ts)
end

-- An unordered sequence (base.py, 4): the contributing events of the earliest window of `window`
-- containing ts that holds steps[s] events of every step s, as {m = member, ts = score} in
-- (score, arrival) order; nil when there is none. own is the member of the op's event.
-- The window [start, start + window] holds every step when the latest of the steps' n-th events
-- from start on (n the step's count) is inside it; when it is not, no window starting before that
-- event's time - window can hold it either, so the search moves there. Each move passes at least
-- one event; usually the first or second start decides, a few lookups per step whatever the
-- number of events held.
local function unordered_set(base, steps, ts, window, own)
  local start = ts - window
  while #steps > 0 and start <= ts do
    local complete = start
    for s = 1, #steps do
      local r = redis.call('ZRANGEBYSCORE', prefix .. 's' .. (s - 1) .. ':' .. base, int(start), '+inf',
        'WITHSCORES', 'LIMIT', steps[s] - 1, 1)
      if #r == 0 then
        return nil -- too few events of the step from start on: later starts have fewer
      end
      complete = math.max(complete, tonumber(r[2]))
    end
    if complete <= start + window then
      -- Of each step its first events from the window's start, and the op's own event.
      local by_member = {[own] = true}
      local chosen = {{m = own, ts = ts}}
      for s = 1, #steps do
        local r = redis.call('ZRANGEBYSCORE', prefix .. 's' .. (s - 1) .. ':' .. base, int(start), '+inf',
          'WITHSCORES', 'LIMIT', 0, steps[s])
        for i = 1, #r, 2 do
          if not by_member[r[i]] then
            by_member[r[i]] = true
            chosen[#chosen + 1] = {m = r[i], ts = tonumber(r[i + 1])}
          end
        end
      end
      table.sort(chosen, function(a, b)
        if a.ts ~= b.ts then
          return a.ts < b.ts
        end
        return a.m < b.m
      end)
      return chosen
    end
    start = complete - window
  end
  return nil
end

for index = 0, #ARGV - 5 do
  local arg = ARGV[index + 5]
  local nl = string.find(arg, '\n', 1, true)
  local kind, ts_arg, window, suppress, count, steps_csv, matched_csv, lb, le, la, ld =
    string.match(string.sub(arg, 1, nl - 1), HEADER)
  local ts = tonumber(ts_arg)
  window, suppress = tonumber(window), tonumber(suppress)
  lb, le, la, ld = tonumber(lb), tonumber(le), tonumber(la), tonumber(ld)
  local base = string.sub(arg, nl + 1, nl + lb)
  local eid = string.sub(arg, nl + lb + 1, nl + lb + le)
  local new_id = string.sub(arg, nl + lb + le + 1, nl + lb + le + la)
  local distinct, unordered = nil, false
  if kind == 'distinct' then
    kind, distinct = 'threshold', string.sub(arg, nl + lb + le + la + 1, nl + lb + le + la + ld)
  elseif kind == 'unordered' then
    kind, unordered = 'sequence', true
  end
  local wkey = prefix .. 'w:' .. base
  local pkey = prefix .. 'p:' .. base
  local dkey = prefix .. 'd:' .. base
  local lo = ts - window
  local lo_arg = int(lo)

  local added, duplicate
  -- Step lists are written without leading zeros: step 0 is matched iff the list starts with 0 or
  -- holds ",0".
  if kind == 'sequence' and not unordered and string.byte(matched_csv, 1) ~= 48
    and not string.find(matched_csv, ',0', 1, true) then
    -- No step-0 event precedes it in the window: not recorded (base.py, 4). Only an event
    -- recorded earlier, while there was one, is a redelivery to replay for. Every step-0 entry is
    -- in the window key too, whose expiry every recording op renews, so a group without a window
    -- key (the usual case: a success of a user without failures) costs one lookup.
    if redis.call('EXISTS', wkey) == 0 then
      added, duplicate = false, false
    elseif redis.call('ZCOUNT', prefix .. 's0:' .. base, lo_arg, ts_arg) == 0 then
      added, duplicate = false, redis.call('ZSCORE', wkey, eid) ~= false
    end
  end
  local newest = nil -- the key's newest timestamp before this event
  if added == nil then
    newest = newest_of[wkey]
    if newest == nil then
      newest = tonumber(redis.call('ZRANGE', wkey, -1, -1, 'WITHSCORES')[2])
      newest_of[wkey] = newest -- a duplicate changes nothing, so it stays true
      newest = newest or ts
    end
    -- NX: an event already recorded for this key is a redelivery; it changes nothing (below).
    added = redis.call('ZADD', wkey, 'NX', ts_arg, eid) == 1
    duplicate = not added
  end
  if added then
    local wttl = window + grace
    if any_replayed then
      replayed[base] = nil
    end
    local steps, matched, member = {}, {}, nil
    keep(wkey, wttl)
    if kind ~= 'match' then
      redis.call('HSET', pkey, eid, string.sub(arg, nl + lb + le + la + ld + 1))
      keep(pkey, wttl)
    end
    if distinct then
      redis.call('HSET', dkey, eid, distinct)
      keep(dkey, wttl)
    end
    if kind == 'sequence' then
      steps, matched = numbers(steps_csv), numbers(matched_csv)
      if arrival == nil then
        arrival = redis.call('INCRBY', KEYS[1], #ARGV - 4) - (#ARGV - 4)
      end
      arrival_ttl = math.max(arrival_ttl, wttl)
      member = string.format('%016d', arrival + index + 1) .. eid
      for _, step in ipairs(matched) do
        local skey = prefix .. 's' .. step .. ':' .. base
        redis.call('ZADD', skey, ts_arg, member)
        keep(skey, wttl)
      end
    end

    -- Slide the window from the older of this event and the newest before it (base.py, 2): no
    -- single event, however far in the future, pushes the others out.
    newest_of[wkey] = math.max(newest, ts)
    local cutoff = math.min(ts, newest) - window
    local floor = floor_of[wkey]
    if floor ~= nil and ts < floor then
      floor = ts -- an entry older than the last cutoff: the next slide must see it
    end
    if floor == nil or cutoff > floor then
      local below = '(' .. int(cutoff)
      if kind == 'match' then
        redis.call('ZREMRANGEBYSCORE', wkey, '-inf', below)
      else
        local stale = redis.call('ZRANGEBYSCORE', wkey, '-inf', below)
        if #stale > 0 then
          redis.call('ZREMRANGEBYSCORE', wkey, '-inf', below)
          hdel(pkey, stale)
          if distinct then
            hdel(dkey, stale)
          end
          for step = 0, #steps - 1 do
            redis.call('ZREMRANGEBYSCORE', prefix .. 's' .. step .. ':' .. base, '-inf', below)
          end
        end
      end
      floor = cutoff
    end
    floor_of[wkey] = floor
    local evicted = false
    if newest > ts then
      -- Only an event older than the newest can grow a key beyond its window. The latest
      -- timestamps go: far-future ones are the kind that never slide out by themselves.
      local size = redis.call('ZCARD', wkey)
      if size > max_entries then
        local top = redis.call('ZRANGE', wkey, max_entries, max_entries, 'WITHSCORES')[2]
        local cut = redis.call('ZRANGEBYSCORE', wkey, top, '+inf')
        redis.call('ZREMRANGEBYSCORE', wkey, top, '+inf')
        if kind ~= 'match' then
          hdel(pkey, cut)
        end
        if distinct then
          hdel(dkey, cut)
        end
        for step = 0, #steps - 1 do
          redis.call('ZREMRANGEBYSCORE', prefix .. 's' .. step .. ':' .. base, top, '+inf')
        end
        newest_of[wkey] = tonumber(redis.call('ZRANGE', wkey, -1, -1, 'WITHSCORES')[2])
        evicted = ts >= tonumber(top)
      end
    end

    local fired, occurrences, first, last = false, 1, ts, ts
    local ids = {}
    if evicted then
      fired = false
    elseif kind == 'match' then
      fired = true
    elseif kind == 'threshold' then
      if not distinct and newest <= ts then
        -- Nothing later than ts: the fullest window is [ts - window, ts] (the usual case).
        occurrences = redis.call('ZCOUNT', wkey, lo_arg, ts_arg)
        if occurrences >= tonumber(count) then
          local r = redis.call('ZRANGEBYSCORE', wkey, lo_arg, ts_arg, 'WITHSCORES', 'LIMIT', 0, max_samples)
          for i = 1, #r, 2 do
            ids[#ids + 1] = r[i]
          end
          fired, first = true, tonumber(r[2])
        end
      else
        local hi = ts_arg
        if newest > ts then
          hi = int(ts + window)
        end
        local r = redis.call('ZRANGEBYSCORE', wkey, lo_arg, hi, 'WITHSCORES')
        local values = nil
        if distinct then
          local members = {}
          for i = 1, #r, 2 do
            members[#members + 1] = r[i]
          end
          values = {}
          for i = 1, #members, 500 do
            local part = redis.call('HMGET', dkey, unpack(members, i, math.min(i + 499, #members)))
            for k = 1, #part do
              values[#values + 1] = part[k] or ''
            end
          end
        end
        local size, i, j = fullest(r, values, ts, window)
        if size >= tonumber(count) then
          local seen = {}
          for k = i, j do
            if #ids >= max_samples then
              break
            end
            if not values then
              ids[#ids + 1] = r[2 * k - 1]
            elseif not seen[values[k]] then
              seen[values[k]] = true -- the first event of each value
              ids[#ids + 1] = r[2 * k - 1]
            end
          end
          fired, occurrences, first, last = true, size, tonumber(r[2 * i]), tonumber(r[2 * j])
        end
      end
    elseif unordered then
      local chosen = unordered_set(base, steps, ts, window, member)
      if chosen then
        for i = 1, math.min(#chosen, max_samples) do
          ids[i] = string.sub(chosen[i].m, 17)
        end
        fired, occurrences, first, last = true, #chosen, chosen[1].ts, chosen[#chosen].ts
      end
    elseif #steps > 0 and string.find(',' .. matched_csv .. ',', ',' .. (#steps - 1) .. ',', 1, true) then
      -- Greedy earliest chain: each step's first `count` events after the one that completed the
      -- previous step, by (timestamp, arrival).
      -- The last step takes every event up to ts: they are counted, and only those the samples
      -- can show are read, so a flood of last-step events costs a count per event, not a scan.
      local score, member, unread = int(lo), nil, 0
      fired = true
      for step = 0, #steps - 1 do
        local skey = prefix .. 's' .. step .. ':' .. base
        local need, held = steps[step + 1], nil
        if step == #steps - 1 then
          held = count_after(skey, score, member, ts_arg)
          need = math.max(0, max_samples - #ids)
        end
        local got, scores = after(skey, score, member, ts_arg, need)
        if (held or #got) < steps[step + 1] then
          fired = false
          break
        end
        if step == 0 then
          first = tonumber(scores[1])
        end
        for i = 1, #got do
          ids[#ids + 1] = string.sub(got[i], 17)
        end
        unread = (held or #got) - #got
        score, member = scores[#scores], got[#got]
      end
      occurrences = #ids + unread
    end

    if fired then
      local alert = false
      if suppress > 0 then
        alert = alert_of(base)
        -- An alert dated far after ts (a forged future timestamp) does not absorb it (base.py, 5).
        if alert and (ts - alert.last >= suppress or alert.last - ts >= suppress + window) then
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
        if new_id == '' then
          new_id = derived_id(base, eid)
        end
        if suppress > 0 then
          local ev, evn = '', 0
          if kind ~= 'match' and n > 0 then
            ev, evn = cmsgpack.pack(unpack(ids, 1, n)), n
          end
          alerts[base] = {id = new_id, occ = occurrences, first = first, last = last, ev = ev, evn = evn,
            evdirty = true}
          dirty[base] = math.max(dirty[base] or 0, suppress + grace)
        end
        out[#out + 1] = string.format('%d 1 %d %d %d %d ', index, occurrences, first, last, n) .. new_id
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
if arrival ~= nil and redis.call('PTTL', KEYS[1]) < arrival_ttl then
  redis.call('PEXPIRE', KEYS[1], arrival_ttl) -- never shortened: step keys it numbered may live on
end
for key, ttl in pairs(ttls) do
  redis.call('PEXPIRE', key, ttl)
end
return out
