-- Place a batch of one partition's customers in its population histogram, absolutely: each
-- customer's stored placement is replaced by the given one and the counts follow. Idempotent:
-- a customer whose stored placement equals the given one changes nothing, so a retried or
-- redelivered call is harmless. Counts that drop to 0 are deleted (the histogram stays as small
-- as the set of values in use).
-- KEYS[1]  the partition's histogram hash (fields r<day>, f<orders>, m<units>, n -> counts, and
--          with a first day the lifetime summaries b<first>:<day>:<orders>, g<orders>:<units>)
-- KEYS[2]  the partition's placement hash (customer -> "<day>:<orders>:<units>[:<first day>]")
-- ARGV     pairs: customer id, placement "<day>:<orders>:<units>[:<first day>]" ("" = not
--          ranked: remove)
-- Returns the number of customers whose placement changed.
local CHUNK = 1000 -- arguments per HMGET/HSET/HDEL: unpack() is bounded by the Lua C stack
local customers = {}
for i = 1, #ARGV, 2 do customers[#customers + 1] = ARGV[i] end
if #customers == 0 then return 0 end
local placed = {}
for first = 1, #customers, CHUNK do
  local last = math.min(first + CHUNK - 1, #customers)
  local got = redis.call('HMGET', KEYS[2], unpack(customers, first, last))
  for i = 1, #got do placed[first + i - 1] = got[i] end
end
local deltas, sets, dels, changed = {}, {}, {}, 0
local function count(placement, by)
  local day, orders, units, first = string.match(placement, '^(-?%d+):(-?%d+):(-?%d+):?(-?%d*)$')
  local fields = {'r' .. day, 'f' .. orders, 'm' .. units, 'n'}
  if first ~= '' then
    fields[#fields + 1] = 'b' .. first .. ':' .. day .. ':' .. orders
    fields[#fields + 1] = 'g' .. orders .. ':' .. units
  end
  for _, field in ipairs(fields) do
    deltas[field] = (deltas[field] or 0) + by
  end
end
for n = 1, #customers do
  local was, now = placed[n] or '', ARGV[2 * n]
  if was ~= now then
    changed = changed + 1
    if was ~= '' then count(was, -1) end
    if now ~= '' then
      count(now, 1)
      sets[#sets + 1] = customers[n]
      sets[#sets + 1] = now
    else
      dels[#dels + 1] = customers[n]
    end
  end
end
for field, by in pairs(deltas) do
  if by ~= 0 and redis.call('HINCRBY', KEYS[1], field, by) == 0 then redis.call('HDEL', KEYS[1], field) end
end
for first = 1, #sets, 2 * CHUNK do
  redis.call('HSET', KEYS[2], unpack(sets, first, math.min(first + 2 * CHUNK - 1, #sets)))
end
for first = 1, #dels, CHUNK do
  redis.call('HDEL', KEYS[2], unpack(dels, first, math.min(first + CHUNK - 1, #dels)))
end
return changed
