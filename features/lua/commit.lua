-- Commit customers' records, each only if nobody else wrote it since we read it.
-- KEYS[1..N]  the customers' hashes (one call may carry a whole batch on a single server; on a
--             Redis Cluster each call carries one customer, so its keys share one slot)
-- ARGV[1]     expiry in seconds (0 = keep forever)
-- then per key, in KEYS order: the version we read ("" when the record did not exist), the
--             number P of field/value pairs, and the 2P items to set (applied offsets, state,
--             changed extras, new outbox entries)
-- Returns per key the new version, or 0 when the stored version moved (another writer owns it).
local ttl = tonumber(ARGV[1])
local cursor = 2
local results = {}
for k = 1, #KEYS do
  local key = KEYS[k]
  local expected = ARGV[cursor]
  local first = cursor + 2
  local last = first + 2 * tonumber(ARGV[cursor + 1]) - 1
  cursor = last + 1
  local current = redis.call('HGET', key, 'v')
  if current == false then current = '' end
  if current ~= expected then
    results[k] = 0
  else
    local version = 1
    if current ~= '' then version = tonumber(current) + 1 end
    local fields = {'v', version}
    for i = first, last do
      fields[#fields + 1] = ARGV[i]
    end
    redis.call('HSET', key, unpack(fields))
    if ttl > 0 then
      redis.call('EXPIRE', key, ttl)
    end
    results[k] = version
  end
end
return results
