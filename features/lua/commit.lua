-- Commit one customer's record if nobody else wrote it since we read it.
-- KEYS[1]  the customer's hash
-- ARGV[1]  expiry in seconds (0 = keep forever)
-- ARGV[2]  the version we read ("" when the record did not exist)
-- ARGV[3..] field, value pairs to set (applied offsets, state, extras, new outbox entries)
-- Returns the new version, or 0 when the stored version moved (another writer owns it now).
local current = redis.call('HGET', KEYS[1], 'v')
if current == false then current = '' end
if current ~= ARGV[2] then
  return 0
end
local version = 1
if current ~= '' then version = tonumber(current) + 1 end
local fields = {'v', version}
for i = 3, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
redis.call('HSET', KEYS[1], unpack(fields))
local ttl = tonumber(ARGV[1])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
end
return version
