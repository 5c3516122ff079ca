-- Commit one customer's record if nobody else advanced it since we read it.
-- KEYS[1]  the customer's hash
-- ARGV[1]  expiry in seconds (0 = keep forever)
-- ARGV[2]  n, the number of source partitions in this write
-- then n triples: offset field (e.g. "o:3"), offset we read ("" when absent), new offset
-- then field, value pairs to set (state, extras, new outbox entries)
-- Returns 1 when written, 0 when a stored offset moved (another writer owns the partition).
local n = tonumber(ARGV[2])
local fields = {}
for i = 0, n - 1 do
  local base = 3 + i * 3
  local current = redis.call('HGET', KEYS[1], ARGV[base])
  if current == false then current = '' end
  if current ~= ARGV[base + 1] then
    return 0
  end
  fields[#fields + 1] = ARGV[base]
  fields[#fields + 1] = ARGV[base + 2]
end
for i = 3 + n * 3, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
redis.call('HSET', KEYS[1], unpack(fields))
local ttl = tonumber(ARGV[1])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
end
return 1
