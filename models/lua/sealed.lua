-- Raise the highest sealed model snapshot version; it never moves back (a learner that lost
-- its lease may still republish an older version, identical, before it notices).
-- KEYS[1]  the sealed-version string key;  ARGV[1]  the version just sealed (integer)
-- Returns the sealed version in force.
local old = redis.call('GET', KEYS[1])
if not old or tonumber(ARGV[1]) > tonumber(old) then
  redis.call('SET', KEYS[1], ARGV[1])
  return tonumber(ARGV[1])
end
return tonumber(old)
